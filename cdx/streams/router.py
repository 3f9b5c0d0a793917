"""The router's Kafka-side core, independent of faust: decode, route, encode, send; bootstrap; reload.

``Router.handle(topic, partition, offset, key, value)`` is called once per source record, in
source order per partition (faust agent, concurrency 1). Everything that changes what is
routed runs under one asyncio lock between two records:

- **activation** of a source partition tp: for every group G the plan routes tp's topic to, the
  state (``cdx.streams.state``) gives ``start(G, tp)``: the live stream sends offsets >= start to G.
  A pair without an entry gets ``start`` = the next offset this worker will process on tp and a
  **backfill**: tp's records below ``start`` are read again and sent to G only, then the entry is
  marked done. Everything sent to G for tp is therefore in source-offset order, and a re-run
  (after a crash) only repeats a prefix G already has: sinks skip it by their watermark.
  Partitions are activated when first seen (exact start: the record's offset) and, for idle
  ones, right after an assignment or reload (start = max(processed, committed, low watermark);
  too high is safe, the backfill then covers the gap).
- **reload**: a new topology replaces the plan between two records; pairs it no longer has are
  deleted from the state (re-adding them later bootstraps again); new pairs are activated.
  Existing pairs keep their entries, so existing groups get nothing twice.

Records that cannot be decoded go to the dead-letter topic with the reason (headers).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import closing

from confluent_kafka import Consumer, Message, Producer, TopicPartition

from cdx.codec import SchemaPublisher, SchemaStore, make_codec
from cdx.codec.errors import SchemaError
from cdx.errors import FatalError, RetriableError, SkippableError
from cdx.kafka.admin import COMPACTED, TopicSpec, ensure_topics, max_message_config, raise_max_message_bytes
from cdx.kafka.config import client_config, producer_config
from cdx.kafka.control import deliver
from cdx.kafka.reading import read_range
from cdx.stage import metrics as stage_metrics
from cdx.stage.letters import OriginRecord, Position, make_letter
from cdx.streams import metrics
from cdx.streams.batch import Decoder
from cdx.streams.output import ConfluentSender
from cdx.streams.routing import Route, RoutingPlan
from cdx.streams.state import RouterState, Start
from cdx.topics import dlq_topic, schemas_topic
from cdx.topics import router_state_topic as state_topic
from cdx.topology import Topology

log = logging.getLogger("cdx.router")
_RECORDS_IN = stage_metrics.RECORDS.labels("router", stage_metrics.WRITTEN)
"""Source records routed: the faust engine reports them as the transactional engine's stage does."""

TP = tuple[str, int]


def group_id(topology: Topology) -> str:
    """The router's consumer group: ``<prefix>-router``."""
    return f"{topology.kafka.topic_prefix}-router"


def group_topic_specs(plan: RoutingPlan) -> list[TopicSpec]:
    """Compacted group topics that take records up to ``kafka.max_message_bytes``, as the table topics do."""
    k = plan.topology.kafka
    config = {**COMPACTED, **max_message_config(k.max_message_bytes)}
    return [TopicSpec(t, k.default_partitions, k.replication_factor, config) for t in plan.group_topics.values()]


def ensure_router_topics(topology: Topology, plan: RoutingPlan) -> None:
    """Group topics (compacted; partitions/replication from ``topology.kafka``), state, schemas, DLQ."""
    k = topology.kafka
    specs = [*group_topic_specs(plan),
             TopicSpec(state_topic(k.topic_prefix), 1, k.replication_factor, COMPACTED),
             TopicSpec(schemas_topic(k.topic_prefix), 1, k.replication_factor, COMPACTED),
             TopicSpec(dlq_topic(k.topic_prefix), 1, k.replication_factor, {})]
    created = ensure_topics(k.client_config(), specs)
    groups = [t for t in plan.group_topics.values() if t not in created]
    raise_max_message_bytes(k.client_config(), groups, k.max_message_bytes, log)


def needs_restart(old: Topology, new: Topology, subscribed: Iterable[str]) -> str | None:
    """Why ``new`` cannot be applied in place (new source topics, other Kafka), or None."""
    a, b = old.kafka, new.kafka
    if (a.bootstrap_servers, a.topic_prefix, a.security, a.schema_registry, a.record_encoding) != \
            (b.bootstrap_servers, b.topic_prefix, b.security, b.schema_registry, b.record_encoding):
        return "the kafka section changed"
    missing = set(RoutingPlan(new).source_topics) - set(subscribed)
    return f"new source topics {sorted(missing)}" if missing else None


def _next_records(reader: Iterator[Message], tp: TP, n: int = 1000) -> list[Message]:
    """Up to ``n`` more records of a backfill's ``read_range``; ``RetriableError`` when it stalls."""
    try:
        return list(itertools.islice(reader, n))
    except TimeoutError as exc:
        raise RetriableError(f"backfill of {tp[0]}[{tp[1]}] made no progress: {exc}") from exc


class Router:
    """See the module docstring. Routed records go out through a ``ConfluentSender``."""

    def __init__(self, topology: Topology) -> None:
        k = topology.kafka
        self.topology = topology
        self.plan = RoutingPlan(topology)
        self.config = client_config(k.bootstrap_servers, k.security)
        self.sender = ConfluentSender(self.config)
        self.control = Producer(producer_config(self.config, linger_ms=0))
        self.store = SchemaStore(k.bootstrap_servers, schemas_topic(k.topic_prefix), consumer_config=self.config)
        publisher = SchemaPublisher(self.control, schemas_topic(k.topic_prefix), transactional=False)
        self.codec = make_codec(k.codec_config(), store=self.store, publisher=publisher)
        self.decoder = Decoder(self.codec)
        self._encode_once = self.decoder.single_object
        self.state = RouterState(self.config, state_topic(k.topic_prefix), self.control)
        self.dlq = dlq_topic(k.topic_prefix)
        self.group = group_id(topology)
        self.lock = asyncio.Lock()
        self.state_stale = True
        self._meta: Consumer | None = None
        self._starts: dict[TP, tuple[dict[str, int], int]] = {}
        self._processed: dict[TP, int] = {}

    # ------------------------------------------------------------------ records
    async def handle(self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None) -> int:
        """Route one source record; returns the number of records sent."""
        async with self.lock:
            tp = (topic, partition)
            entry = self._starts.get(tp)
            if entry is None:
                await self._activate({tp: offset})
                entry = self._starts[tp]
            starts, max_start = entry
            if offset >= max_start:
                sent = await self._route(topic, partition, offset, key, value, None)
            else:
                sent = await self._route(topic, partition, offset, key, value, lambda g: offset >= starts[g])
            self._processed[tp] = offset + 1
            _RECORDS_IN.inc()
            metrics.RECORDS_OUT.inc(sent)
            return sent

    async def _route(self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None,
                     wanted: Callable[[str], bool] | None, *, dead_letter: bool = True) -> int:
        """Route one record to the groups ``wanted`` accepts (all when None); undecodable ones to the DLQ
        (a backfill passes ``dead_letter=False``: the live stream dead-lettered them already)."""
        sent = 0
        try:
            for r in self._routes(topic, partition, offset, key, value):
                sent += await self._send(r, r.groups if wanted is None else [g for g in r.groups if wanted(g)])
        except SkippableError as exc:
            if dead_letter:
                self._dead_letter(topic, partition, offset, key, value, exc.reason)
            else:
                log.warning("router: backfill skips %s[%d]@%d: %s", topic, partition, offset, exc.reason)
        return sent

    def _routes(self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None) -> list[Route]:
        if value is None or self.plan.subjob_of(topic) is None:
            return []
        if key is None:
            raise SkippableError("record has no key")
        record = self.decoder.decode(topic, partition, offset, key, value)
        try:
            return self.plan.route(record)
        except SchemaError as exc:
            raise FatalError(f"cannot project {topic} for its subjob: {exc}") from exc

    async def _send(self, r: Route, groups: Iterable[str]) -> int:
        n = 0
        kb = vb = None
        for g in groups:
            topic = self.plan.group_topics[g]
            if kb is None or not self._encode_once:
                kb = self.codec.encode_key(topic, r.schemas.key, r.key)
                vb = self.codec.encode_value(topic, r.schemas.value, r.value)
            await self.sender.send(topic, kb, vb)
            n += 1
        return n

    def _dead_letter(self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None,
                     reason: str) -> None:
        log.error("router: %s[%d]@%d to the dead-letter topic: %s", topic, partition, offset, reason)
        letter = make_letter("router", reason, source=Position(topic, partition, offset),
                             record=OriginRecord(key, value))
        deliver(self.control, self.dlq, [letter], 30, "dead-letter record")  # RetriableError: retried
        metrics.DEAD_LETTERS.inc()

    # ------------------------------------------------------------- activation
    async def _activate(self, nexts: Mapping[TP, int]) -> None:
        """Make ``start(G, tp)`` known for every (G, tp) of the plan; backfill new pairs (lock held)."""
        if self.state_stale:
            await asyncio.to_thread(self.state.sync)
            self.state_stale = False
        new: dict[tuple[str, str, int], Start] = {}
        backfills: dict[TP, dict[str, int]] = {}
        lows: dict[TP, int] = {}
        for tp, nxt in nexts.items():
            topic, p = tp
            for g in self.plan.groups_of(topic):
                e = self.state.get(g, topic, p)
                if e is None:
                    if tp not in lows:
                        lows[tp] = await asyncio.to_thread(self._low, tp)
                    e = new[(g, topic, p)] = Start(nxt, nxt <= lows[tp])
                if not e.done:
                    backfills.setdefault(tp, {})[g] = e.start
        await asyncio.to_thread(self.state.put, new)
        for tp, groups in backfills.items():
            await self._backfill(tp, groups)
        if backfills:
            await self.sender.flush()
            await asyncio.to_thread(self.state.put, {(g, tp[0], tp[1]): Start(s, True)
                                                     for tp, groups in backfills.items() for g, s in groups.items()})
        for tp in nexts:
            starts = {g: self.state.entries[(g, tp[0], tp[1])].start for g in self.plan.groups_of(tp[0])}
            self._starts[tp] = (starts, max(starts.values(), default=0))

    async def activate_assigned(self, assigned: Iterable[TP]) -> None:
        """Activate the assigned partitions not active yet (idle ones included)."""
        async with self.lock:
            todo = [tp for tp in assigned if tp not in self._starts and self.plan.subjob_of(tp[0]) is not None]
            if not todo:
                return
            committed = await asyncio.to_thread(self._committed, todo)
            nexts = {}
            for tp in todo:
                low = await asyncio.to_thread(self._low, tp)
                nexts[tp] = max(self._processed.get(tp, 0), committed.get(tp, -1), low)
            await self._activate(nexts)

    def on_assigned(self) -> None:
        """After a rebalance: forget activations and re-read the state before the next one."""
        self.state_stale = True
        self._starts.clear()

    async def _backfill(self, tp: TP, starts: dict[str, int]) -> None:
        topic, p = tp
        end = max(starts.values())
        t0, n_in, n_out = time.monotonic(), 0, 0
        log.info("router: backfilling %s[%d] below offset %d for %s", topic, p, end, sorted(starts))
        with closing(read_range(self.config, topic, {p: end}, timeout=60)) as reader:
            while batch := await asyncio.to_thread(_next_records, reader, tp):
                for msg in batch:
                    off = msg.offset() or 0
                    n_in += 1

                    def wanted(g: str, off: int = off) -> bool:
                        return g in starts and off < starts[g]

                    n_out += await self._route(topic, p, off, msg.key(), msg.value(), wanted, dead_letter=False)
        metrics.BACKFILLED.inc(n_out)
        log.info("router: backfilled %s[%d]: %d records read, %d sent in %.1fs", topic, p, n_in, n_out,
                 time.monotonic() - t0)

    def _meta_consumer(self) -> Consumer:
        if self._meta is None:
            self._meta = Consumer({**self.config, "group.id": self.group, "enable.auto.commit": False})
        return self._meta

    def _committed(self, tps: list[TP]) -> dict[TP, int]:
        got = self._meta_consumer().committed([TopicPartition(t, p) for t, p in tps], timeout=30)
        return {(x.topic, x.partition): x.offset for x in got if x.offset >= 0}

    def _low(self, tp: TP) -> int:
        low, _high = self._meta_consumer().get_watermark_offsets(TopicPartition(*tp), timeout=30, cached=False)
        return int(low)

    # ------------------------------------------------------------------ reload
    def needs_restart(self, topology: Topology, subscribed: Iterable[str]) -> str | None:
        return needs_restart(self.topology, topology, subscribed)

    async def reload(self, topology: Topology, assigned: Iterable[TP]) -> None:
        """Apply ``topology`` between two records (see the module docstring)."""
        plan = RoutingPlan(topology)
        await asyncio.to_thread(ensure_topics, topology.kafka.client_config(), group_topic_specs(plan))
        async with self.lock:
            await asyncio.to_thread(self.state.sync)
            gone = self.plan.pairs() - plan.pairs()
            await asyncio.to_thread(self.state.put, dict.fromkeys(self.state.keys_for(gone)))
            added = plan.pairs() - self.plan.pairs()
            self.topology, self.plan = topology, plan
            self._starts.clear()
            log.info("router: topology reloaded: %d source topics, %d groups; pairs added %s, removed %s",
                     len(plan.source_topics), len(plan.group_topics), sorted(added), sorted(gone))
        await self.activate_assigned(assigned)

    def close(self) -> None:
        self.control.flush(30)
        if self._meta is not None:
            self._meta.close()
        self.store.close()

