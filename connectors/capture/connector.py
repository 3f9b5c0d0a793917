"""The capture connector: HQ change tracking -> per-table topics, exactly once.

Contract
- Each poll reads, per tracked HQ table, the net changes after the table's stored position
  and publishes them (Debezium envelopes, a tombstone after each delete) **together with the
  new position in one Kafka transaction**. A crash at any moment leaves either both or
  neither committed; on start the connector resumes from the committed positions.
- A table without a position is snapshotted (op ``r``) in resumable chunks, each published with
  its progress in the position, then streaming continues from the version taken before the
  first chunk: no gap (see :mod:`connectors.capture.snapshot`). One chunk per table per poll, so
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
from collections.abc import Callable, Iterable
from typing import Any

from cdx.cleanup import quietly
from cdx.codec import Column, SchemaPublisher, SchemaStore, TableSchemas, make_codec
from cdx.codec.envelope import Op
from cdx.dialects import ColumnInfo, get_dialect, key_columns
from cdx.errors import ConfigError, FatalError, RetriableError
from cdx.kafka.admin import COMPACTED, TopicSpec, ensure_topics, max_message_config, raise_max_message_bytes
from cdx.kafka.config import client_config, producer_config, size_limited
from cdx.kafka.transactions import TransactionalProducer
from cdx.topics import dlq_topic, positions_topic, schemas_topic
from cdx.topology.root import Topology
from connectors.capture import metrics
from connectors.capture.positions import Position, SnapshotProgress, encode_position, load_positions, position_key
from connectors.capture.records import ChangeEncoder
from connectors.capture.snapshot import read_chunk, stale_keys
from connectors.capture.tracking import ChangeTracker, ResyncRequired, TableRef, open_tracker
from connectors.upload.records import dlq_record

log = logging.getLogger("cdx.capture")

_OPS = {"I": Op.CREATE, "U": Op.UPDATE, "D": Op.DELETE}
RECORD_OVERHEAD = 1024
"""Bytes kept free below ``max_message_bytes`` for the record and batch headers."""
DLQ_CONFIG = {"retention.ms": "-1"}


def to_codec_columns(columns: Iterable[ColumnInfo]) -> list[Column]:
    """Dialect columns -> codec columns, primary-key columns first in key order."""
    cols = list(columns)
    order = key_columns(cols)
    by_name = {c.name: c for c in cols}
    ordered = [by_name[n] for n in order] + [c for c in cols if c.name not in order]
    return [Column(c.name, c.logical_type, nullable=c.nullable, primary_key=c.name in order,
                   precision=c.precision, scale=c.scale, length=c.length) for c in ordered]


class TableState:
    """What the connector knows of one tracked table."""

    def __init__(self, ref: TableRef, topic: str) -> None:
        self.ref = ref
        self.topic = topic
        self.schemas: TableSchemas | None = None
        self.encoder: ChangeEncoder | None = None
        self.fields: frozenset[str] = frozenset()
        self.position: Position | None = None
        self.position_written_at = 0.0

    @property
    def name(self) -> str:
        return str(self.ref)


class CaptureConnector:
    """Polls HQ change tracking and publishes per-table topics (see module docstring)."""

    def __init__(self, topology: Topology, *, poll_interval: float = 0.2, batch_size: int = 5000,
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

            self._transaction(publish)

    # ------------------------------------------------------------------- loop
    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        """Poll until ``stop()``; retriable failures back off and retry, fatal ones raise.

        Sets up first unless ``setup()`` was already called."""
        if self.producer is None:
            self.setup()
        backoff = 0.5
        while not self._stop.is_set():
            try:
                published = self.poll_once()
                backoff = 0.5
            except RetriableError as exc:
                log.warning("capture will retry in %.1fs: %s", backoff, exc)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)
                self._reconnect()
                continue
            if not published:
                self._stop.wait(self.poll_interval)
        self.close()

    def poll_once(self) -> int:
        """One pass over every table; returns the number of changes published."""
        total = 0
        for table in self.tables:
            if self._stop.is_set():
                break
            total += self._capture_table(table)
        return total

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

    def _capture_table(self, table: TableState) -> int:
        assert self.tracker is not None
        tracker = self.tracker
        if table.position is None:
            return self._start_snapshot(table, resnapshot=False)
        if table.position.snapshot is not None:
            return self._snapshot_chunk(table)
        try:
            changes, reached = self._db(lambda: tracker.changes(table.ref, table.position.version,  # type: ignore[union-attr]
                                                                limit=self.batch_size))
        except ResyncRequired as exc:
            log.warning("%s; re-snapshotting %s", exc, table.name)
            metrics.RESNAPSHOTS.labels(table.name).inc()
            return self._start_snapshot(table, resnapshot=True)
        if not changes:
            idle = time.monotonic() - table.position_written_at > self.idle_position_interval
            if reached > table.position.version and idle:
                self._transaction(lambda: self._produce_position(table, reached))
                table.position = Position(reached, int(time.time() * 1000))
            return 0
        if any(c.row is not None and frozenset(c.row) != table.fields for c in changes):
            self._db(lambda: self._refresh_schema(table))
        now = int(time.time() * 1000)

        def work() -> None:
            counts = dict.fromkeys(_OPS.values(), 0)
            for change in changes:
                op = _OPS[change.op]
                self._produce_change(table, op, change.key, change.row, change.version, now)
                counts[op] += 1
            self._produce_position(table, reached)
            for op, count in counts.items():
                if count:
                    metrics.CHANGES.labels(table.name, op.value).inc(count)

        self._transaction(work)
        table.position = Position(reached, now)
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
            for row in chunk.rows:
                self._produce_change(table, Op.READ, table.schemas.key_of(row), row, version, started, snapshot="true")
            for key in stale:
                self._produce_change(table, Op.DELETE, key, None, version, started, snapshot="true")
            self._produce_position(table, version, chunk.progress)

        self._transaction(work)
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

    # -------------------------------------------------------------- producing
    def _produce_change(self, table: TableState, op: Op, key: dict[str, Any], row: dict[str, Any] | None,
                        version: int, now: int, snapshot: str = "false") -> None:
        assert self.producer is not None and table.schemas is not None
        encoder = table.encoder
        if encoder is None or encoder.schemas is not table.schemas:
            encoder = table.encoder = ChangeEncoder(self.codec, table.topic, table.schemas, hq_name=self.hq_name,
                                                    schema=table.ref.schema or "", table=table.ref.name)
        key_bytes, value_bytes = encoder.encode(op, key, row, version, now, snapshot)
        size = len(key_bytes) + len(value_bytes or b"")
        if size + RECORD_OVERHEAD > self.max_message_bytes:
            self._dead_letter(table, key, size)
            return
        self.producer.produce(table.topic, value_bytes, key=key_bytes)
        if op is Op.DELETE:
            self.producer.produce(table.topic, None, key=key_bytes)

    def _dead_letter(self, table: TableState, key: dict[str, Any], size: int) -> None:
        """A change too large to publish: a dead letter (table, key, size, reason) in the same transaction."""
        assert self.producer is not None
        reason = (f"record of {size:,} bytes exceeds kafka.max_message_bytes ({self.max_message_bytes:,} bytes,"
                  f" less {RECORD_OVERHEAD} for headers); raise the setting or shrink the row")
        dkey, dvalue, headers = dlq_record("capture", reason, table=table.name, topic=table.topic, row=key)
        self.producer.produce(self.dlq_topic, dvalue, key=dkey, headers=headers)
        metrics.DEAD_LETTERS.labels(table.name).inc()
        log.error("%s: change of key %s not published: %s", table.name, key, reason)

    def _produce_position(self, table: TableState, version: int, snapshot: SnapshotProgress | None = None) -> None:
        assert self.producer is not None
        self.producer.produce(self.positions_topic, encode_position(version, snapshot),
                              key=position_key(self.hq_name, table.name))
        table.position_written_at = time.monotonic()

    def _transaction(self, work: Callable[[], object]) -> None:
        assert self.producer is not None
        self.producer.begin()
        try:
            work()
            self.producer.commit()
        except BaseException:
            metrics.ABORTS.inc()
            try:
                self.producer.abort()
            finally:
                self.publisher.transaction_aborted()
            raise
        self.publisher.transaction_committed()
        metrics.TRANSACTIONS.inc()

