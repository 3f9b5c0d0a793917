"""The capture connector: HQ change tracking -> per-table topics, exactly once.

A stage on the kernel (:mod:`cdx.stage`): :func:`cdx.stage.loop.run_stage` runs

- source :class:`~cdx.connectors.capture.source.TrackingSource`: per tracked HQ table, the net changes
  after the table's committed position, or the next chunk of its snapshot (one table per record);
- decode :meth:`~cdx.connectors.capture.writer.CaptureWriter.encode`: Debezium envelopes, a tombstone
  after each delete, dead letters for records too large (new schemas first, in a short transaction);
- target :class:`~cdx.kafka.txn_target.KafkaTxnTarget`: the records **and the table's new position**
  (compacted topic ``<prefix>._capture_positions``) in one Kafka transaction. A crash at any moment
  leaves both or neither committed; on start the connector resumes from the committed positions.

Contract (snapshots and re-snapshots: :mod:`~cdx.connectors.capture.source`; records too large, dead
letters: :mod:`~cdx.connectors.capture.writer`)
- One producer per HQ database (``transactional.id`` = ``<prefix>-capture-<hqdb>``). A lost producer
  (fenced by a transaction coordinator that moved in a broker failover) is recovered in process while
  this process still holds its lease (``lease``, set with ``--ha``; without it, always): what the
  lost transaction advanced is dropped, positions are re-read from what is committed (more than 10
  failures in 600 s: exit). A process whose lease another one took stops (FatalError).
- ``stop()`` (SIGTERM) lets the current transaction finish, then ``run`` returns.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from cdx.codec import SchemaStore, make_codec
from cdx.connectors.capture.positions import Position
from cdx.connectors.capture.source import TrackingSource
from cdx.connectors.capture.tables import TableState, Unit, capture_tables, table_specs
from cdx.connectors.capture.tracking import ChangeTracker, open_tracker
from cdx.connectors.capture.writer import CaptureWriter
from cdx.errors import ConfigError, FatalError, SkippableError
from cdx.kafka.admin import COMPACTED, TopicSpec, ensure_topics, raise_max_message_bytes
from cdx.kafka.config import client_config, producer_config, size_limited
from cdx.kafka.lease import Lease
from cdx.kafka.txn_target import KafkaTxnTarget, Outgoing
from cdx.stage.contract import Stage, StageOptions
from cdx.stage.loop import apply_batch, run_stage
from cdx.topics import dlq_topic, lease_topic, positions_topic, schemas_topic
from cdx.topology.root import Topology

if TYPE_CHECKING:
    from cdx.topology.live import LiveTopology

log = logging.getLogger("cdx.capture")

DLQ_CONFIG = {"retention.ms": "-1"}
PASS_UNITS = 1000
"""Tables' units per Kafka transaction at most (a pass's units go in one, up to ``batch_size`` changes)."""


class CaptureConnector:
    """The capture stage (see the module docstring): ``setup()``, then ``run()`` until ``stop()``."""

    def __init__(self, topology: Topology, *, poll_interval: float = 0.05, batch_size: int = 5000,
                 idle_position_interval: float = 30.0, tracker_factory: Callable[[], ChangeTracker] | None = None,
                 snapshot_chunk_rows: int = 10_000) -> None:
        self.topology = topology
        self.poll_interval = poll_interval
        self._stop = threading.Event()
        k = topology.kafka
        self.prefix, self.hq_name = k.topic_prefix, topology.hq.name
        self.base_config = client_config(k.bootstrap_servers, k.security)
        self.positions_topic = positions_topic(self.prefix)
        self.schemas_topic = schemas_topic(self.prefix)
        self.dlq_topic = dlq_topic(self.prefix)
        self.max_message_bytes = k.max_message_bytes
        factory = tracker_factory or (lambda: open_tracker(topology.hq.dialect, topology.hq.dsn))
        self.source = TrackingSource(capture_tables(topology), factory, topology.hq.dialect, self.base_config,
                                     self.positions_topic, self.hq_name, self._stop, batch_size=batch_size,
                                     snapshot_chunk_rows=snapshot_chunk_rows,
                                     idle_position_interval=idle_position_interval)
        self.target: KafkaTxnTarget[dict[str, Position]] = KafkaTxnTarget(
            "capture", size_limited(producer_config(self.base_config, transactional_id=f"{self.prefix}-capture-"
                                                    f"{self.hq_name}", transaction_timeout_ms=900_000),
                                    self.max_message_bytes), self._position_records, still_ours=self._still_ours,
            schemas_topic=self.schemas_topic)
        self.writer: CaptureWriter | None = None
        self.lease: Lease | None = None
        """Set by ``hold_lease`` (``cdx capture --ha``): a lost producer is recovered only while this process
        holds it."""
        self.live: LiveTopology | None = None
        """Set by ``cdx capture``: new topology revisions are taken between polls (``reload``)."""

    # views for the CLI, ``reload`` and tests
    @property
    def tables(self) -> list[TableState]:
        return self.source.tables

    @property
    def idle_position_interval(self) -> float:
        return self.source.idle_position_interval

    @idle_position_interval.setter
    def idle_position_interval(self, seconds: float) -> None:
        self.source.idle_position_interval = seconds

    # ----------------------------------------------------------------- set-up
    def setup(self) -> None:
        """Create topics, the transactional producer and the codec; open HQ and load positions.

        May be retried: it starts from scratch, and database errors are typed (``RetriableError``
        while HQ does not answer), as Kafka's are."""
        self.close()
        k = self.topology.kafka
        specs = table_specs(self.topology, self.tables)
        specs += [TopicSpec(self.positions_topic, 1, k.replication_factor, COMPACTED),
                  TopicSpec(self.schemas_topic, 1, k.replication_factor, COMPACTED),
                  TopicSpec(self.dlq_topic, 1, k.replication_factor, DLQ_CONFIG)]
        created = ensure_topics(self.base_config, specs)
        raise_max_message_bytes(self.base_config, [t.topic for t in self.tables if t.topic not in created],
                                self.max_message_bytes, log)
        self.target.open()
        store = SchemaStore(k.bootstrap_servers, self.schemas_topic, consumer_config=dict(self.base_config))
        codec = make_codec(k.codec_config(), store=store, publisher=self.target.publisher)
        self.writer = CaptureWriter(self.target, codec, self.hq_name, self.positions_topic, self.dlq_topic,
                                    self.max_message_bytes)
        self.source.codec, self.source.store = codec, store
        self.source.open()
        log.info("capture of %s set up; publishing", self.hq_name)

    def hold_lease(self, session_timeout: float) -> Lease:
        """``--ha``: the capture lease of this HQ database, which ``cdx.cli.common.run_role`` waits for before
        ``setup`` and releases after ``close``; a lost producer is recovered only while it is held, and
        losing it stops the connector."""
        k = self.topology.kafka
        self.lease = Lease(self.base_config, lease_topic(self.prefix), role="capture", name=self.hq_name,
                           prefix=self.prefix, replication_factor=k.replication_factor,
                           session_timeout=session_timeout, on_lost=self.stop)
        return self.lease

    def stage(self) -> Stage[Unit, list[Outgoing], dict[str, Position]]:
        """The stage definition :func:`run_stage` runs."""
        assert self.writer is not None, "setup() first"
        return Stage("capture", self.source, self.target, self._dead_letter, decode=self.writer.encode,
                     between_batches=self._between_batches,
                     options=StageOptions(max_records=PASS_UNITS, max_wait=self.poll_interval))

    def reload(self, topology: Topology) -> None:
        """Take a new topology revision (``cdx.topology.live``) between two polls; the source re-reads schemas and
        committed positions before its next poll, as after a ``rewind``.

        - A new download table (a new subjob): its topic is created; from the next poll on it is captured from
          its last committed position or, having none, snapshotted first (as at start). Its HQ table must be
          tracked already (``cdx topology apply`` enables tracking before it publishes).
        - A table no longer in any download subjob: no longer polled; its topic and positions stay.
        - Refused (``ConfigError``, nothing changed): a new table not tracked (run ``cdx hq enable-tracking``
          or ``cdx topology apply``), another HQ database or Kafka cluster (restart capture for those).
        """
        old, c = self.topology, self.source
        if (old.hq.dsn, old.hq.name, old.kafka.bootstrap_servers, old.kafka.topic_prefix) != (
                topology.hq.dsn, topology.hq.name, topology.kafka.bootstrap_servers, topology.kafka.topic_prefix):
            raise ConfigError("this revision changes the HQ database or the Kafka cluster/prefix: restart capture")
        tracker = c.tracker
        assert tracker is not None
        running = {t.topic: t for t in c.tables}
        wanted = capture_tables(topology)
        new = [t for t in wanted if t.topic not in running]
        for t in new:
            try:
                c.db(lambda t=t: tracker.min_valid_version(t.ref))  # type: ignore[misc]
            except ConfigError as exc:
                raise ConfigError(f"HQ table {t.name} is not tracked ({exc}): run `cdx hq enable-tracking`"
                                  " (or `cdx topology apply`)") from exc
        for t in new:
            c.refresh_schema(t)  # refused here (no primary key...) rather than at the next poll
        if new:
            ensure_topics(c.base_config, table_specs(topology, new))
        c.tables = [running.get(t.topic, t) for t in wanted]
        c.rewind()
        gone = sorted(set(running) - {t.topic for t in wanted})
        if new or gone:
            log.info("capture: tables added %s, no longer captured %s", [t.name for t in new], gone)
        self.topology = topology

    # ------------------------------------------------------------------- loop
    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        """Poll until ``stop()``; retriable failures back off and retry, fatal ones raise.

        Sets up first unless ``setup()`` was already called."""
        if self.writer is None or self.target.producer is None:
            self.setup()
        run_stage(self.stage(), self._stop)

    def poll_once(self) -> int:
        """One pass over every table (tests, benchmarks); returns the number of changes published."""
        stage = self.stage()
        self._between_batches()
        total = 0
        for unit in self.source.one_pass():
            apply_batch(stage, [unit], self._stop)
            total += len(unit.events)
        return total

    def close(self) -> None:
        self.target.close()
        self.source.close()

    def _between_batches(self) -> None:
        self.target.recover()  # before the source re-reads what is committed after a lost producer
        if self.live is not None:
            self.live.offer(self.reload)

    def _position_records(self, position: dict[str, Position]) -> list[Outgoing]:
        assert self.writer is not None
        return self.writer.position_records(position)

    def _still_ours(self) -> bool:
        return self.lease is None or self.lease.confirmed()

    def _dead_letter(self, unit: Unit, exc: SkippableError) -> None:
        raise FatalError(f"capture: a change of {unit.table.name} cannot be encoded ({exc}); stopping, nothing"
                         " after it is published") from exc
