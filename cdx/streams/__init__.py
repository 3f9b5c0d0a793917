"""Routing: per-table topics into channel data-group topics (``cdx route``). See docs/routing.md.

- ``routing``: the rules, a pure function of (topology, record): groups, projection, records;
- ``stateful``: the rules with per-key state (rows that move, tombstones as deletes), pure;

The transactional engine (default, exactly once):

- ``engine``: a stage on ``cdx.stage`` (``run_stage``): the target, one Kafka transaction per batch
  (routed records, state, send offsets, commit), and the hooks between batches;
- ``tables``: the stage's source, the table topics (partitions activated before routing);
- ``recovery``: a lost producer replaced in process;
- ``batch``: one source record in, its routed records produced (decode once, encode once);
- ``keystate``: per-key state (which groups hold each row), changelog ``<prefix>._router_keys``;
- ``progress``: per (group, topic, partition) progress, changelog ``<prefix>._router_progress``;
- ``activation``: activation of assigned partitions, backfills, topology reloads.

The faust engine (``--engine faust``, at least once):

- ``router``: the Kafka-side core (decode, route, encode, send; bootstrap of new pairs; reload);
- ``state``: the bootstrap state topic (``<prefix>._router_state``);
- ``output``: routed records out through librdkafka, flushed before every offset commit;
- ``transport``: faust's aiokafka transport made read_committed, idempotent and commit-safe;
- ``app``: the faust app (one agent, concurrency 1, manual acks) and its reload timer;
- ``worker``: ``run()``, the in-process worker behind ``cdx route`` and ``python -m cdx.streams``.
"""
