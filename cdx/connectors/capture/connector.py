"""The capture connector: HQ change tracking -> per-table topics, exactly once.

Contract
- Each poll reads, per tracked HQ table, the net changes after the table's stored position
  and publishes them (Debezium envelopes, a tombstone after each delete) **together with the
  new position in one Kafka transaction**. A crash at any moment leaves either both or
  neither committed; on start the connector resumes from the committed positions.
- A table without a position is snapshotted (op ``r``) in resumable chunks, each published with
  its progress in the position, then streaming continues from the version taken before the
  first chunk: no gap (see :mod:`cdx.connectors.capture.snapshot`). One chunk per table per poll, so
  a long snapshot never holds up the other tables.
- A position older than the table's minimum valid version (tracking cleaned up) triggers a
  re-snapshot; keys present on the topic but gone from the table get a delete + tombstone,
  so no consumer keeps a row HQ deleted while its changes were unavailable.
- A record larger than ``kafka.max_message_bytes`` (the producer's ``message.max.bytes`` and the
  table topics' ``max.message.bytes``, set together) is not published: a dead letter (kind
  ``capture``: table, key, size, reason) goes to ``<prefix>._dlq`` in the same transaction and
  the position moves on, so neither the table nor any other one waits for it.
- One producer per HQ database (``transactional.id`` = ``<prefix>-capture-<hqdb>``): a second
  instance fences the first, which then stops (FatalError).
- ``stop()`` (SIGTERM) lets the current transaction finish, then ``run`` returns.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from cdx.cleanup import quietly
from cdx.codec import SchemaPublisher, SchemaStore, make_codec
from cdx.codec.envelope import Op
from cdx.connectors.capture import metrics, requests
from cdx.connectors.capture.positions import Position, SnapshotProgress, load_positions
from cdx.connectors.capture.records import to_codec_columns
from cdx.connectors.capture.reload import reload_capture
from cdx.connectors.capture.snapshot import read_chunk, stale_keys
from cdx.connectors.capture.tables import TableState
from cdx.connectors.capture.tracking import ChangeTracker, ResyncRequired, TableRef, open_tracker
from cdx.connectors.capture.writer import RECORD_OVERHEAD, CaptureWriter
from cdx.dialects import get_dialect
from cdx.errors import ConfigError, FatalError, RetriableError
from cdx.kafka.admin import COMPACTED, TopicSpec, ensure_topics, max_message_config, raise_max_message_bytes
from cdx.kafka.config import client_config, producer_config, size_limited
from cdx.kafka.transactions import TransactionalProducer
from cdx.stage.backoff import Backoff
from cdx.topics import dlq_topic, positions_topic, schemas_topic
from cdx.topology.live import LiveTopology
from cdx.topology.root import Topology

log = logging.getLogger("cdx.capture")

__all__ = ["RECORD_OVERHEAD", "CaptureConnector", "TableState"]

_OPS = {"I": Op.CREATE, "U": Op.UPDATE, "D": Op.DELETE}
DLQ_CONFIG = {"retention.ms": "-1"}
REQUEST_INTERVAL = 2.0
"""Seconds between two reads of the operator's requests in HQ (``cdx.connectors.capture.requests``)."""


class CaptureConnector:
    """Polls HQ change tracking and publishes per-table topics (see module docstring)."""

    def __init__(self, topology: Topology, *, poll_interval: float = 0.05, batch_size: int = 5000,
                 idle_position_interval: float = 30.0, tracker_factory: Callable[[], ChangeTracker] | None = None,
                 snapshot_chunk_rows: int = 10_000) -> None:
        self.topology = topology
        self.poll_interval = poll_interval
        self.batch_size = batch_size
        self.idle_position_interval = idle_position_interval
        self.snapshot_chunk_rows = snapshot_chunk_rows
        self._tracker_factory = tracker_factory or (lambda: open_tracker(topology.hq.dialect, topology.hq.dsn))
        self._stop = threading.Event()
        k = topology.kafka
        self.prefix = k.topic_prefix
        self.hq_name = topology.hq.name
        self.base_config = client_config(k.bootstrap_servers, k.security)
        self.positions_topic = positions_topic(self.prefix)
        self.schemas_topic = schemas_topic(self.prefix)
        self.dlq_topic = dlq_topic(self.prefix)
        self.max_message_bytes = k.max_message_bytes
        self.tables: list[TableState] = []
        for subjob in topology.download_subjobs():
            if subjob.source_topic is not None:
                continue  # another capture (e.g. Debezium) writes this table's topic
            ref = TableRef(subjob.hq_table.schema, subjob.hq_table.name)
            topic = topology.hq_table_topic(subjob)  # the name the router reads, whatever the schema
            self.tables.append(TableState(ref, topic))
        self.tracker: ChangeTracker | None = None
        self.producer: TransactionalProducer | None = None
        self._idle = False
        self.live: LiveTopology | None = None
        """Set by ``cdx capture``: new topology revisions are taken between polls (``reload``)."""
        self._requests_due = 0.0
        self._handled: dict[str, str] = {}

    # ----------------------------------------------------------------- set-up
    def setup(self) -> None:
        """Create topics, open the tracker and the transactional producer, load positions.

        May be retried: it starts from scratch, and database errors are typed (``RetriableError``
        while HQ does not answer), as Kafka's are."""
        self.close()
        self.producer, self.tracker = None, None
        self._db(self._setup)

    def _setup(self) -> None:
        k = self.topology.kafka
        limit = max_message_config(self.max_message_bytes)
        specs = [TopicSpec(t.topic, k.default_partitions, k.replication_factor, {**COMPACTED, **limit})
                 for t in self.tables]
        specs += [TopicSpec(self.positions_topic, 1, k.replication_factor, COMPACTED),
                  TopicSpec(self.schemas_topic, 1, k.replication_factor, COMPACTED),
                  TopicSpec(self.dlq_topic, 1, k.replication_factor, DLQ_CONFIG)]
        created = ensure_topics(self.base_config, specs)
        denied = raise_max_message_bytes(self.base_config, [t.topic for t in self.tables if t.topic not in created],
                                         self.max_message_bytes)
        for topic in denied:
            log.warning("cannot raise max.message.bytes of %s to kafka.max_message_bytes (%d): no right to alter it;"
                        " an administrator must, or larger rows will fail", topic, self.max_message_bytes)
        self.tracker = self._tracker_factory()
        self.producer = TransactionalProducer(size_limited(producer_config(
            self.base_config, transactional_id=f"{self.prefix}-capture-{self.hq_name}",
            transaction_timeout_ms=900_000), self.max_message_bytes))
        self.publisher = SchemaPublisher(self.producer.producer, self.schemas_topic, transactional=True)
        self.store = SchemaStore(k.bootstrap_servers, self.schemas_topic, consumer_config=dict(self.base_config))
        registry = k.codec_config()
        self.codec = make_codec(registry, store=self.store, publisher=self.publisher)
        self.writer = CaptureWriter(self.producer, self.publisher, self.codec, self.hq_name, self.positions_topic,
                                    self.dlq_topic, self.max_message_bytes)
        for table in self.tables:
            self._refresh_schema(table)
        positions = load_positions(self.base_config, self.positions_topic, self.hq_name)
        for table in self.tables:
            table.position = positions.get(table.name)
            if table.position is not None:
                metrics.VERSION.labels(table.name).set(table.position.version)

    def _refresh_schema(self, table: TableState) -> None:
        assert self.tracker is not None
        dialect = self.tracker.dialect
        columns = dialect.introspect_columns(self.tracker.conn, table.ref.schema, table.ref.name)
        self.tracker.conn.rollback()
        cols = to_codec_columns(columns)
        schemas = self.store.register_table(table.topic, cols)
        table.schemas = schemas
        table.fields = frozenset(c.name for c in cols)
        if {schemas.key.fingerprint_hex, schemas.value.fingerprint_hex} - self.publisher.published:
            # Publish new schemas in a short transaction of their own: a schema record inside a long
            # data transaction (a snapshot) would hold back the schemas topic's last stable offset, so
            # read_committed readers would not see other producers' schemas until it commits.
            def publish() -> None:
                self.publisher.publish(schemas.key)
                self.publisher.publish(schemas.value)

            self.writer.transaction(publish)

    def reload(self, topology: Topology) -> None:
        """Take a new topology revision between two polls (see ``cdx.connectors.capture.reload``)."""
        reload_capture(self, topology)

    # ------------------------------------------------------------------- loop
    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        """Poll until ``stop()``; retriable failures back off and retry, fatal ones raise.

        Sets up first unless ``setup()`` was already called."""
        if self.producer is None:
            self.setup()
        backoff = Backoff(initial=0.5, maximum=30.0)
        while not self._stop.is_set():
            try:
                if self.live is not None:
                    self.live.offer(self.reload)
                published = self.poll_once()
                backoff.reset()
            except RetriableError as exc:
                log.warning("capture will retry in %.1fs: %s", backoff.peek(), exc)
                backoff.wait(self._stop)
                self._reconnect()
                continue
            if not published:
                self._stop.wait(self.poll_interval)
        self.close()

    def poll_once(self) -> int:
        """One pass over every table; returns the number of changes published.

        The operator's re-snapshot requests are taken first (``cdx capture resnapshot``, read at most
        every ``REQUEST_INTERVAL`` seconds). Every pass then asks HQ for its current tracking version
        (PostgreSQL: the one stamping of the pass); after a pass that published nothing, no table is
        read while every table was already read up to it: idle polls cost little, so the poll interval
        can be short (latency)."""
        assert self.tracker is not None
        total = self._take_requests()
        current = int(self._db(self.tracker.current_version))
        if total == 0 and self._idle and self._nothing_new(current):
            return 0
        for table in self.tables:
            if self._stop.is_set():
                break
            total += self._capture_table(table, stamped=True)
        self._idle = total == 0
        return total

    def _take_requests(self) -> int:
        """Re-snapshot the tables ``cdx capture resnapshot`` asked for (``requests``), at most every
        ``REQUEST_INTERVAL`` seconds; returns the rows published."""
        if self.tracker is None or time.monotonic() < self._requests_due:
            return 0
        self._requests_due = time.monotonic() + REQUEST_INTERVAL
        tracker = self.tracker
        found: dict[str, str] = self._db(lambda: requests.pending(tracker.conn, tracker.dialect))
        published = 0
        for table in self.tables:
            value = found.get(table.name.casefold())
            if value is None or self._handled.get(table.name) == value:
                continue
            log.warning("re-snapshotting %s on request (%s)", table.name, value)
            metrics.RESNAPSHOTS.labels(table.name).inc()
            published += self._start_snapshot(table, resnapshot=True)
            self._handled[table.name] = value
            try:
                requests.done(tracker.conn, tracker.dialect, table.name, value)
            except Exception as exc:  # a read-only HQ user: remembered in _handled instead
                log.warning("cannot clear the re-snapshot request of %s in HQ: %s", table.name, exc)
        return published

    def _nothing_new(self, current: int) -> bool:
        """True when every table streams, was read up to HQ's current tracking version and has no idle
        position to write (a quiet table's position must not fall behind the tracking retention)."""
        assert self.tracker is not None
        now = time.monotonic()
        for t in self.tables:
            if t.position is None or t.position.snapshot is not None or t.checked < 0:
                return False
            if t.checked > t.position.version and now - t.position_written_at > self.idle_position_interval:
                return False
        return all(t.checked >= current for t in self.tables)

    def close(self) -> None:
        if self.producer is not None:
            self.producer.close()
        if self.tracker is not None:
            quietly(self.tracker.conn.close, "capture: closing the HQ connection", log)

    def _reconnect(self) -> None:
        if self.tracker is not None:
            quietly(self.tracker.conn.close, "capture: closing the HQ connection before reconnecting", log)
        try:
            self.tracker = self._tracker_factory()
        except Exception as exc:  # the database is still down: the next poll retries
            log.warning("HQ database unreachable: %s", exc)

    def _db(self, fn: Callable[[], Any]) -> Any:
        """Run a tracker call; database errors become typed cdx errors."""
        try:
            return fn()
        except (ResyncRequired, ConfigError, FatalError, RetriableError):
            raise
        except Exception as exc:
            category = get_dialect(self.topology.hq.dialect).classify_error(exc)
            if category is RetriableError:
                raise RetriableError(f"HQ database error: {exc}") from exc
            raise FatalError(f"HQ database error while capturing: {exc}") from exc

    def _capture_table(self, table: TableState, stamped: bool = False) -> int:
        assert self.tracker is not None
        tracker = self.tracker
        if table.position is None:
            return self._start_snapshot(table, resnapshot=False)
        if table.position.snapshot is not None:
            return self._snapshot_chunk(table)
        try:
            changes, reached = self._db(lambda: tracker.changes(table.ref, table.position.version,  # type: ignore[union-attr]
                                                                limit=self.batch_size, stamped=stamped))
        except ResyncRequired as exc:
            log.warning("%s; re-snapshotting %s", exc, table.name)
            metrics.RESNAPSHOTS.labels(table.name).inc()
            return self._start_snapshot(table, resnapshot=True)
        if not changes:
            idle = time.monotonic() - table.position_written_at > self.idle_position_interval
            if reached > table.position.version and idle:
                self.writer.transaction(lambda: self.writer.position(table, reached))
                table.position = Position(reached, int(time.time() * 1000))
            table.checked = reached
            return 0
        if any(c.row is not None and frozenset(c.row) != table.fields for c in changes):
            self._db(lambda: self._refresh_schema(table))
        now = int(time.time() * 1000)

        def work() -> None:
            counts = dict.fromkeys(_OPS.values(), 0)
            out: list[dict[str, Any]] = []
            for change in changes:
                op = _OPS[change.op]
                self.writer.change(table, op, change.key, change.row, change.version, now, out)
                counts[op] += 1
            self.writer.flush(table, out)
            self.writer.position(table, reached)
            for op, count in counts.items():
                if count:
                    metrics.CHANGES.labels(table.name, op.value).inc(count)

        self.writer.transaction(work)
        table.position = Position(reached, now)
        table.checked = reached
        metrics.VERSION.labels(table.name).set(reached)
        return len(changes)

    def _start_snapshot(self, table: TableState, *, resnapshot: bool) -> int:
        """Take the version the snapshot starts at, then publish its first chunk."""
        assert self.tracker is not None
        tracker = self.tracker
        self._db(lambda: self._refresh_schema(table))
        version = int(self._db(tracker.current_version))
        now = int(time.time() * 1000)
        table.position = Position(version, now, SnapshotProgress(None, 0, now, resnapshot))
        table.checked = -1
        return self._snapshot_chunk(table)

    def _snapshot_chunk(self, table: TableState) -> int:
        """Publish the next chunk of the table's snapshot with the progress (one transaction); the
        last chunk also deletes stale keys (a re-snapshot) and ends the snapshot."""
        assert self.tracker is not None and table.position is not None and table.position.snapshot is not None
        tracker, version, progress = self.tracker, table.position.version, table.position.snapshot
        chunk = self._db(lambda: read_chunk(lambda after, n: tracker.snapshot_chunk(table.ref, after, n),
                                            progress, self.snapshot_chunk_rows))
        if any(frozenset(row) != table.fields for row in chunk.rows[:1]):
            self._db(lambda: self._refresh_schema(table))
        stale = self._stale_keys(table, chunk.rows) if chunk.done and progress.resnapshot else []
        started = progress.started_ms

        def work() -> None:
            assert table.schemas is not None
            out: list[dict[str, Any]] = []
            for row in chunk.rows:
                self.writer.change(table, Op.READ, table.schemas.key_of(row), row, version, started, out, "true")
            for key in stale:
                self.writer.change(table, Op.DELETE, key, None, version, started, out, "true")
            self.writer.flush(table, out)
            self.writer.position(table, version, chunk.progress)

        self.writer.transaction(work)
        table.position = Position(version, int(time.time() * 1000), chunk.progress)
        metrics.CHANGES.labels(table.name, "r").inc(len(chunk.rows))
        if chunk.done:
            log.info("snapshot of %s: %d rows at version %d (%d stale keys deleted)", table.name,
                     progress.rows + len(chunk.rows), version, len(stale))
            metrics.VERSION.labels(table.name).set(version)
        return len(chunk.rows) + len(stale)

    def _stale_keys(self, table: TableState, last_chunk: list[dict[str, Any]]) -> list[dict[str, Any]]:
        assert table.schemas is not None and table.position is not None and table.position.snapshot is not None
        schemas = table.schemas
        encoded = [self.codec.encode_key(table.topic, schemas.key, schemas.key_of(row)) for row in last_chunk]
        return stale_keys(self.base_config, table.topic, self.codec, table.position.version,
                          table.position.snapshot.started_ms, encoded)
