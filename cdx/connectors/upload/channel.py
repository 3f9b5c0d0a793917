"""One channel's upload thread (:class:`ChannelUploader`); the contract is in :mod:`cdx.connectors.upload.uploader`.

Reading a poll is :mod:`cdx.connectors.upload.channel_read`, producing it
:mod:`cdx.connectors.upload.channel_produce`; this module holds the set-up (producer, positions,
database), the poll loop with its back-off, restarts at a counter and the transaction.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from confluent_kafka import KafkaException

from cdx import controls
from cdx.cleanup import quietly
from cdx.codec import SchemaPublisher, SchemaStore, SingleObjectCodec, make_codec, murmur2_partition
from cdx.codec.codec import Codec
from cdx.connectors.upload import metrics
from cdx.connectors.upload.channel_produce import DeadRow, UploadWriter
from cdx.connectors.upload.channel_read import Pending, UploadTable, read_pending
from cdx.connectors.upload.channel_recovery import ProducerRecovery
from cdx.connectors.upload.plan import (
    UploadOptions,
    load_upload_positions,
    position_key,
    upload_positions_topic,
    upload_subjobs_for,
)
from cdx.connectors.upload.positions import UploadPosition, resume
from cdx.connectors.upload.records import KEY_SCHEMA, KeyEncoder, value_namespace
from cdx.connectors.upload.source import UploadSource, close_quietly, db_error, open_database
from cdx.dialects import Connection, get_dialect
from cdx.errors import ConfigError, RetriableError, SkippableError
from cdx.kafka.admin import partitions_of
from cdx.kafka.config import client_config, producer_config, size_limited
from cdx.kafka.lease import Lease, LeaseLost
from cdx.kafka.transactions import ProducerLost, TransactionalProducer
from cdx.stage.backoff import Backoff
from cdx.topics import dlq_topic, lease_topic, schemas_topic, upload_topic
from cdx.topology import Topology
from cdx.topology.model import Channel

log = logging.getLogger("cdx.upload")

__all__ = ["ChannelDatabaseError", "ChannelUploader"]


class ChannelDatabaseError(RetriableError):
    """Reading a channel database failed (unreachable, missing table or column...); its
    ``__cause__`` is the typed error. The channel is retried with backoff; others continue."""

    def __init__(self, typed: BaseException) -> None:
        super().__init__(str(typed))
        self.typed = typed


class ChannelUploader:
    """Uploads one channel (see :mod:`cdx.connectors.upload.uploader`); ``run`` is the channel's thread."""

    def __init__(self, topology: Topology, channel: Channel, store: SchemaStore, options: UploadOptions,
                 stop: threading.Event) -> None:
        self.topology = topology
        self.channel = channel
        self.id = channel.id
        self.store = store
        self.options = options
        self._stop = stop
        self.paused = False
        k = topology.kafka
        self.prefix = k.topic_prefix
        self.base_config = client_config(k.bootstrap_servers, k.security_of(channel.id))  # its own identity
        self.topic = upload_topic(self.prefix, channel.id)
        self.positions_topic = upload_positions_topic(self.prefix)
        self.dlq_topic = dlq_topic(self.prefix)
        self.subjobs = upload_subjobs_for(topology, channel.id)
        self.dialect = get_dialect(channel.database.dialect.value)
        self.conn: Connection | None = None
        self.tables: list[UploadTable] = []
        self.producer: TransactionalProducer | None = None
        self.publisher: SchemaPublisher | None = None
        self.codec: Codec | None = None
        self.positions: dict[str, UploadPosition] | None = None
        self.partitions = 1
        self.error: BaseException | None = None
        self._keys = KeyEncoder()
        self.max_message_bytes = topology.kafka.max_message_bytes
        self._restart_pending = options.from_counter is not None
        self.recovery = ProducerRecovery(self.id, self.base_config)

    # ----------------------------------------------------------------------------- set-up
    def _kafka(self) -> None:
        """(Re)create the transactional producer and re-read the committed positions.
        Kafka trouble (broker unreachable, leader moving...) is a ``RetriableError``."""
        try:
            self._kafka_setup()
        except KafkaException as exc:
            raise RetriableError(f"Kafka: {exc}") from exc
        except TimeoutError as exc:
            raise RetriableError(f"Kafka: {exc}") from exc

    def _kafka_setup(self) -> None:
        self.recovery.confirm()
        k = self.topology.kafka
        if self.producer is not None:  # after a failure: a new instance, the same transactional.id
            self.producer.reopen()
        else:
            self.producer = TransactionalProducer(size_limited(producer_config(
                self.base_config, transactional_id=f"{self.prefix}-upload-{self.id}",
                transaction_timeout_ms=120_000), self.max_message_bytes))
        self.publisher = SchemaPublisher(self.producer.producer, schemas_topic(self.prefix), transactional=True)
        registry = k.codec_config()
        self.codec = make_codec(registry, store=self.store, publisher=self.publisher)
        self.partitions = max(1, len(partitions_of(self.base_config, self.topic)))
        prefix = f"{self.id}/"
        self.positions = {key: p for key, p in load_upload_positions(self.base_config, self.positions_topic).items()
                          if key.startswith(prefix)}
        for t in self.tables:
            t.position = resume(self.positions.get(t.key), t.source.counter)
        self.recovery.recovered()

    def _database(self) -> None:
        """(Re)connect to the channel database and build the read plans."""
        close_quietly(self.conn)
        self.conn = None
        conn = open_database(self.channel.database, read_snapshots=True)
        try:
            tables = []
            for subjob in self.subjobs:
                source = UploadSource(self.dialect, conn, subjob)
                key = position_key(self.id, str(source.table))
                schemas = self.store.register_table(
                    value_namespace(self.prefix, subjob.hq_table.schema, subjob.hq_table.name), source.codec_columns())
                stored = (self.positions or {}).get(key)
                tables.append(UploadTable(subjob, source, key, schemas,
                                          murmur2_partition(str(source.table).encode(), self.partitions),
                                          resume(stored, source.counter)))
            conn.rollback()
        except BaseException:
            close_quietly(conn)
            raise
        self.conn = conn
        self.tables = tables
        for t in tables:
            self._gauges(t)

    def _publish_schemas(self) -> None:
        """Publish the key and value schemas in a transaction of their own, before any data uses them.

        Data transactions then never write to the schemas topic: a long data transaction of one
        channel cannot hold back the schemas topic's last stable offset and hide a schema that
        another channel's committed records need.
        """
        if not isinstance(self.codec, SingleObjectCodec) or self.publisher is None or not self.tables:
            return
        publisher = self.publisher
        schemas = [KEY_SCHEMA, *(t.schemas.value for t in self.tables)]
        if all(s.fingerprint_hex in publisher.published for s in schemas):
            return
        self._transaction(lambda: [publisher.publish(s) for s in schemas])

    def _close_producer(self) -> None:
        if self.producer is not None:
            quietly(self.producer.close, "upload: closing the producer", log)
            self.producer = None

    def close(self) -> None:
        self._close_producer()
        close_quietly(self.conn)
        self.conn = None

    # ------------------------------------------------------------------------------- loop
    def run(self) -> None:
        """Poll until stopped. Database trouble of any kind (unreachable, missing table...) and
        retriable Kafka errors back off and retry, for this channel only; a fatal Kafka error
        (fenced by another instance) ends the thread and is kept in ``self.error``.

        With ``options.ha`` the channel first waits as standby for its lease (``cdx.kafka.lease``);
        the producer (whose ``init_transactions`` fences a predecessor) and the positions come only
        after it, and the lease is released only after the producer is closed."""
        lease = self._lease() if self.options.ha else None
        self.recovery.lease = lease
        try:
            if lease is None or lease.acquire(self._stop):
                self._poll_until_stopped()
        except BaseException as exc:
            self.error = self.error or exc  # e.g. the lease group cannot be joined
            raise
        finally:
            if lease is not None:
                lease.release()

    def _lease(self) -> Lease:
        k = self.topology.kafka

        def lost() -> None:
            self.error = LeaseLost(f"channel {self.id}: another process took over this channel's upload"
                                   " (this one was paused or cut off from Kafka); exiting so it can restart as standby")
            self._stop.set()

        return Lease(self.base_config, lease_topic(self.prefix), role="upload", name=self.id, prefix=self.prefix,
                     replication_factor=k.replication_factor, session_timeout=self.options.lease_timeout,
                     on_lost=lost)

    def _poll_until_stopped(self) -> None:
        backoff = Backoff(initial=min(0.5, self.options.max_backoff), maximum=self.options.max_backoff)
        kafka_ok = False
        try:
            while not self._stop.is_set():
                try:
                    if not kafka_ok:
                        self._kafka()
                        kafka_ok = True
                        log.info("channel %s: transactional producer ready, positions re-read", self.id)
                    changed = self.poll_once() > 0
                    backoff.reset()
                except ChannelDatabaseError as exc:
                    self._retry_later(exc, backoff, error=not isinstance(exc.typed, RetriableError))
                    continue
                except ProducerLost as exc:  # fenced or failed fatally: recover in process (or stop)
                    kafka_ok = False
                    self.recovery.lost(exc, backoff.peek())  # the one log line of the attempt
                    metrics.CHANNEL_ERRORS.labels(self.id).inc()
                    backoff.wait(self._stop)
                    continue
                except (RetriableError, SkippableError, KafkaException, BufferError) as exc:
                    kafka_ok = False
                    self._retry_later(exc, backoff, error=False)
                    continue
                if not changed:
                    self._stop.wait(self.options.poll_interval)
        except BaseException as exc:
            self.error = exc
            log.error("channel %s: upload stopped: %s", self.id, exc)
            raise
        finally:
            self.close()

    def _retry_later(self, exc: BaseException, backoff: Backoff, *, error: bool) -> None:
        metrics.CHANNEL_ERRORS.labels(self.id).inc()
        (log.error if error else log.warning)("channel %s: %s; retrying in %.1fs", self.id, exc, backoff.peek())
        if isinstance(exc, ChannelDatabaseError):
            close_quietly(self.conn)
            self.conn = None
        backoff.wait(self._stop)

    # ------------------------------------------------------------------------------- poll
    def poll_once(self) -> int:
        """Read every upload table once (one snapshot) and publish what is new with the new
        positions (one transaction). Returns the rows published plus the gaps closed (0: nothing
        changed). Raises ``ChannelDatabaseError`` for any database trouble, ``RetriableError`` /
        ``FatalError`` for Kafka."""
        if self.producer is None:
            self._kafka()
        try:
            if self.conn is None:
                self._database()
        except Exception as exc:
            raise ChannelDatabaseError(db_error(self.dialect, exc, f"channel {self.id} database")) from exc
        if self._restart_pending:  # a wrong --table is a ConfigError that stops the upload
            self._restart_tables()
        try:
            if self._paused():
                return 0
            assert self.conn is not None
            work = read_pending(self.tables, self.dialect, self.conn, self.options)
        except Exception as exc:
            raise ChannelDatabaseError(db_error(self.dialect, exc, f"channel {self.id} database")) from exc
        self._publish_schemas()
        if not work:
            return 0
        now = int(time.time() * 1000)
        dead: list[DeadRow] = []
        self._transaction(lambda: self._writer().produce(work, now, dead))
        published = sum(self._committed(p, now) for p in work)
        for p, row, reason in dead:
            log.error("channel %s, %s counter %d sent to the dead-letter topic: %s", self.id, p.table.source.table,
                      row.counter, reason)
        return published + sum(len(p.closed) for p in work) + (0 if published else 1)

    def _committed(self, p: Pending, now: int) -> int:
        """After the commit: the table takes its new position; metrics and log lines. Returns its rows."""
        t = p.table
        t.position = p.position
        n = len(p.rows)
        if n:
            metrics.ROWS.labels(self.id, str(t.source.table)).inc(n)
        if p.late:
            metrics.LATE_ROWS.labels(self.id, str(t.source.table)).inc(p.late)
        for gap in p.closed:
            metrics.GAPS_SKIPPED.labels(self.id, str(t.source.table)).inc(gap.size)
            log.warning("channel %s, %s: counters %d..%d never appeared (rolled back or deleted; first seen %.1fs"
                        " ago): skipped", self.id, t.source.table, gap.start, gap.end,
                        (now - gap.first_seen_ms) / 1000)
        if t.position.halted:
            log.error("channel %s: %s", self.id, t.position.halted)
        self._gauges(t)
        return n

    def _paused(self) -> bool:
        """``cdx channel pause`` (read from the channel database at every poll; logged when it changes)."""
        assert self.conn is not None
        try:
            paused = controls.read(self.conn, self.dialect).paused
        finally:
            self.conn.rollback()
        if (paused is not None) != self.paused:
            self.paused = paused is not None
            log.info("channel %s: upload %s", self.id, f"paused ({paused})" if paused else "resumed")
        return self.paused

    def _gauges(self, t: UploadTable) -> None:
        metrics.OPEN_GAPS.labels(self.id, str(t.source.table)).set(t.position.open_gaps())
        metrics.LOW_WATERMARK.labels(self.id, str(t.source.table)).set(t.position.low)

    def _writer(self) -> UploadWriter:
        assert self.producer is not None and self.codec is not None
        return UploadWriter(self.id, self.producer, self.codec, self._keys, self.topic, self.positions_topic,
                            self.dlq_topic, self.max_message_bytes, self.options.gap_timeout)

    def _restart_tables(self) -> None:
        """``from_counter``: restart the chosen tables at that counter (one transaction, once)."""
        assert self.producer is not None
        wanted = {n.casefold() for n in self.options.from_tables or ()}
        chosen = [t for t in self.tables if not wanted or str(t.source.table).casefold() in wanted
                  or t.source.table.name.casefold() in wanted or t.subjob.id.casefold() in wanted]
        if wanted and not chosen:
            raise ConfigError(f"channel {self.id}: no upload table named {sorted(wanted)}; it uploads "
                              + ", ".join(str(t.source.table) for t in self.tables))
        restarted = []
        for t in chosen:
            pos = t.position.copy()
            pos.restart_at(int(self.options.from_counter or 0))
            restarted.append((t, pos))
        producer = self.producer

        def write() -> None:
            for t, pos in restarted:
                producer.produce(self.positions_topic, pos.encode(), key=t.key.encode())

        self._transaction(write)
        for t, pos in restarted:
            log.warning("channel %s, %s: upload restarts at counter %d (was at %d%s)", self.id, t.source.table,
                        pos.high + 1, t.position.high, "; halt lifted" if t.position.halted else "")
            t.position = pos
        self._restart_pending = False

    def _transaction(self, work: Any) -> None:
        assert self.producer is not None and self.publisher is not None
        self.producer.begin()
        try:
            work()
            self.producer.commit()
        except BaseException:
            metrics.ABORTS.labels(self.id).inc()
            try:
                quietly(self.producer.abort, "upload: aborting the transaction", log)
            finally:
                self.publisher.transaction_aborted()
            raise
        self.publisher.transaction_committed()
        metrics.TRANSACTIONS.labels(self.id).inc()
