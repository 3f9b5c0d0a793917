"""Channel upload: each channel's upload tables -> ``<prefix>.upload.<channel-id>``, exactly once.

Contract
- Per channel and upload subjob, rows are read by replication counter (see
  :mod:`cdx.connectors.upload.positions` for the gap handling that makes out-of-order commits safe)
  and published on the channel's upload topic, keyed by (table, counter), each table on one
  partition in counter order.
- One poll of a channel reads every upload table in **one database snapshot** and produces the
  new rows of all of them **and** their new positions (compacted topic
  ``<prefix>._upload_positions``, key ``<channel>/<table>``) in **one Kafka transaction**. A crash
  at any moment leaves both or neither; a restart resumes from the committed positions.
- ``transactional.id`` = ``<prefix>-upload-<channel>``: a second instance for the same channel
  fences the first (which then stops). After a failed transaction the producer is re-created
  (which completes or aborts whatever was in flight) and the positions re-read, exactly as on a
  restart.
- Channels are independent (a thread each): an unreachable or misconfigured channel database is
  retried with backoff and delays only its own upload.
- A row that cannot be encoded, or whose record is larger than ``kafka.max_message_bytes``, goes
  to the dead-letter topic in the same transaction, and the channel moves on; so does a gap given
  up after ``gap_timeout`` (see :mod:`cdx.connectors.upload.guards`).
- A table whose counters went backwards is halted (in its position) until restarted at a counter
  (``UploadOptions.from_counter``: ``cdx channel upload --from-counter N``); the others go on.
- ``stop()`` (SIGTERM) lets every channel finish its current transaction, then ``run`` returns.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaException

from cdx import controls
from cdx.cleanup import quietly
from cdx.codec import SchemaPublisher, SchemaStore, SingleObjectCodec, TableSchemas, make_codec, murmur2_partition
from cdx.codec.codec import Codec
from cdx.connectors.upload import guards, metrics
from cdx.connectors.upload.plan import (
    UploadOptions,
    load_upload_positions,
    position_key,
    upload_positions_topic,
    upload_subjobs_for,
    uploading_channels,
)
from cdx.connectors.upload.positions import UploadPosition, resume
from cdx.connectors.upload.records import (
    EXTENSION_HEADER,
    KEY_SCHEMA,
    SUBJOB_HEADER,
    KeyEncoder,
    dlq_record,
    upload_envelope,
    value_namespace,
)
from cdx.connectors.upload.reload import reload_connector
from cdx.connectors.upload.source import ReadSnapshot, SourceRow, UploadSource, close_quietly, db_error, open_database
from cdx.dialects import Connection, get_dialect
from cdx.errors import ConfigError, FatalError, RetriableError, SkippableError
from cdx.kafka.admin import (
    COMPACTED,
    TopicSpec,
    ensure_topics,
    max_message_config,
    partitions_of,
    raise_max_message_bytes,
)
from cdx.kafka.config import client_config, producer_config, size_limited
from cdx.kafka.lease import Lease, LeaseLost
from cdx.kafka.transactions import TransactionalProducer
from cdx.topics import dlq_topic, lease_topic, schemas_topic, upload_topic
from cdx.topology import Subjob, Topology
from cdx.topology.live import LiveTopology
from cdx.topology.model import Channel

log = logging.getLogger("cdx.upload")

__all__ = ["ChannelUploader", "UploadConnector", "UploadOptions", "load_upload_positions", "upload_positions_topic",
           "upload_subjobs_for", "uploading_channels"]
@dataclass
class _Table:
    subjob: Subjob
    source: UploadSource
    key: str
    schemas: TableSchemas
    partition: int
    position: UploadPosition


@dataclass
class _Pending:
    table: _Table
    position: UploadPosition
    rows: list[SourceRow] = field(default_factory=list)
    closed: list[Any] = field(default_factory=list)
    late: int = 0
    timed_out: list[Any] = field(default_factory=list)


class ChannelDatabaseError(RetriableError):
    """Reading a channel database failed (unreachable, missing table or column...); its
    ``__cause__`` is the typed error. The channel is retried with backoff; others continue."""

    def __init__(self, typed: BaseException) -> None:
        super().__init__(str(typed))
        self.typed = typed


class ChannelUploader:
    """Uploads one channel (see module docstring); ``run`` is the channel's thread."""

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
        self.tables: list[_Table] = []
        self.producer: TransactionalProducer | None = None
        self.publisher: SchemaPublisher | None = None
        self.codec: Codec | None = None
        self.positions: dict[str, UploadPosition] | None = None
        self.partitions = 1
        self.error: BaseException | None = None
        self._keys = KeyEncoder()
        self.max_message_bytes = topology.kafka.max_message_bytes
        self._restart_pending = options.from_counter is not None

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
        self._close_producer()
        k = self.topology.kafka
        self.producer = TransactionalProducer(size_limited(producer_config(
            self.base_config, transactional_id=f"{self.prefix}-upload-{self.id}", transaction_timeout_ms=120_000),
            self.max_message_bytes))
        self.publisher = SchemaPublisher(self.producer.producer, schemas_topic(self.prefix), transactional=True)
        registry = k.codec_config()
        self.codec = make_codec(registry, store=self.store, publisher=self.publisher)
        self.partitions = max(1, len(partitions_of(self.base_config, self.topic)))
        prefix = f"{self.id}/"
        self.positions = {key: p for key, p in load_upload_positions(self.base_config, self.positions_topic).items()
                          if key.startswith(prefix)}
        for t in self.tables:
            t.position = resume(self.positions.get(t.key), t.source.counter)

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
                tables.append(_Table(subjob, source, key, schemas,
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
        backoff = 0.5
        kafka_ok = False
        try:
            while not self._stop.is_set():
                try:
                    if not kafka_ok:
                        self._kafka()
                        kafka_ok = True
                        log.info("channel %s: transactional producer ready, positions re-read", self.id)
                    changed = self.poll_once() > 0
                    backoff = 0.5
                except ChannelDatabaseError as exc:
                    self._retry_later(exc, backoff, error=not isinstance(exc.typed, RetriableError))
                    backoff = min(backoff * 2, self.options.max_backoff)
                    continue
                except (RetriableError, SkippableError, KafkaException, BufferError) as exc:
                    kafka_ok = False
                    self._retry_later(exc, backoff, error=False)
                    backoff = min(backoff * 2, self.options.max_backoff)
                    continue
                if not changed:
                    self._stop.wait(self.options.poll_interval)
        except BaseException as exc:
            self.error = exc
            log.error("channel %s: upload stopped: %s", self.id, exc)
            raise
        finally:
            self.close()

    def _retry_later(self, exc: BaseException, backoff: float, *, error: bool) -> None:
        metrics.CHANNEL_ERRORS.labels(self.id).inc()
        (log.error if error else log.warning)("channel %s: %s; retrying in %.1fs", self.id, exc, backoff)
        if isinstance(exc, ChannelDatabaseError):
            close_quietly(self.conn)
            self.conn = None
        self._stop.wait(backoff)

    # ------------------------------------------------------------------------------- poll
    def _read(self) -> list[_Pending]:
        assert self.conn is not None
        opts = self.options
        now = int(time.time() * 1000)
        work: list[_Pending] = []
        with ReadSnapshot(self.dialect, self.conn).open() as snap:
            for t in self.tables:
                if t.position.halted:
                    continue
                pos = t.position.copy()
                rows: list[SourceRow] = []
                upto = None
                if pos.gaps:
                    rows += t.source.read_ranges(self.conn, [(g.start, g.end) for g in pos.gaps], opts.batch_size)
                    if len(rows) >= opts.batch_size:
                        upto = rows[-1].counter  # the gap re-read is incomplete above this counter
                rows += t.source.read_tail(self.conn, pos.high, opts.batch_size)
                if not rows or rows[-1].counter <= pos.high:  # nothing above high: did the counters go back?
                    pos.halted = guards.backwards_reason(str(t.source.table), pos.high,
                                                         t.source.next_counter_floor(self.conn))
                    if pos.halted:
                        work.append(_Pending(t, pos))
                        continue
                adv = pos.advance([r.counter for r in rows], now_ms=now, horizon_token=snap.token,
                                  horizon_passed=snap.passed, grace_ms=int(opts.gap_grace * 1000),
                                  timeout_ms=int(opts.gap_timeout * 1000), gaps_read_upto=upto)
                if not adv.changed:
                    continue
                wanted = set(adv.publish)
                fresh = []
                for r in rows:
                    if r.counter in wanted:
                        wanted.discard(r.counter)
                        fresh.append(r)
                work.append(_Pending(t, pos, fresh, adv.closed, adv.late, adv.timed_out))
        return work

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
            work = self._read()
        except Exception as exc:
            raise ChannelDatabaseError(db_error(self.dialect, exc, f"channel {self.id} database")) from exc
        self._publish_schemas()
        if not work:
            return 0
        now = int(time.time() * 1000)
        dead: list[tuple[_Pending, SourceRow, str]] = []
        self._transaction(lambda: self._produce(work, now, dead))
        published = 0
        for p in work:
            t = p.table
            t.position = p.position
            n = len(p.rows)
            published += n
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
        for p, row, reason in dead:
            log.error("channel %s, %s counter %d sent to the dead-letter topic: %s", self.id, p.table.source.table,
                      row.counter, reason)
        return published + sum(len(p.closed) for p in work) + (0 if published else 1)

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

    def _gauges(self, t: _Table) -> None:
        metrics.OPEN_GAPS.labels(self.id, str(t.source.table)).set(t.position.open_gaps())
        metrics.LOW_WATERMARK.labels(self.id, str(t.source.table)).set(t.position.low)

    def _produce(self, work: list[_Pending], now: int, dead: list[tuple[_Pending, SourceRow, str]]) -> None:
        assert self.producer is not None and self.codec is not None
        dead.clear()
        codec, producer, topic = self.codec, self.producer, self.topic
        fast_keys = isinstance(codec, SingleObjectCodec)
        for p in work:
            t = p.table
            src = t.source
            table_name = str(src.table)
            subjob_header = (SUBJOB_HEADER, t.subjob.id.encode())
            joined = src.ext_table is not None
            for gap in p.timed_out:
                dkey, dvalue, dheaders = guards.gap_letter(self.id, table_name, topic, gap, now,
                                                           self.options.gap_timeout)
                producer.produce(self.dlq_topic, dvalue, key=dkey, headers=dheaders)
                metrics.DEAD_LETTERS.labels(guards.GAP_KIND).inc()
            for row in p.rows:
                key = self._keys.encode(table_name, row.counter) if fast_keys else \
                    codec.encode_key(topic, KEY_SCHEMA, {"table": table_name, "counter": row.counter})
                try:
                    if row.error is not None:
                        raise SkippableError(row.error)
                    value = codec.encode_value(topic, t.schemas.value, upload_envelope(
                        self.id, src.table.schema, src.table.name, row.counter, row.values, now))
                    too_big = guards.oversize_reason(len(key) + len(value or b""), self.max_message_bytes)
                    if too_big is not None:
                        dkey, dvalue, headers = guards.oversize_letter(self.id, table_name, topic, row.counter,
                                                                       too_big)
                        producer.produce(self.dlq_topic, dvalue, key=dkey, headers=headers)
                        metrics.DEAD_LETTERS.labels("channel-upload").inc()
                        dead.append((p, row, too_big))
                        continue
                except SkippableError as exc:
                    dkey, dvalue, headers = dlq_record("channel-upload", str(exc), channel=self.id, table=table_name,
                                                       counter=row.counter, topic=topic, row=row.values)
                    producer.produce(self.dlq_topic, dvalue, key=dkey, headers=headers)
                    metrics.DEAD_LETTERS.labels("channel-upload").inc()
                    dead.append((p, row, str(exc)))
                    continue
                headers = [subjob_header]
                if joined:
                    headers.append((EXTENSION_HEADER, b"present" if row.extension_present else b"absent"))
                producer.produce(topic, value, key=key, partition=t.partition, headers=headers)
            producer.produce(self.positions_topic, p.position.encode(), key=t.key.encode())

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


class UploadConnector:
    """Runs :class:`ChannelUploader` threads for many channels in one process."""

    def __init__(self, topology: Topology, channels: list[str] | None = None,
                 options: UploadOptions | None = None) -> None:
        self.topology = topology
        self.options = options or UploadOptions()
        self.channels = uploading_channels(topology, channels)
        self._stop = threading.Event()
        k = topology.kafka
        self.prefix = k.topic_prefix
        self.base_config = client_config(k.bootstrap_servers, k.security)
        self.store: SchemaStore | None = None
        self.uploaders: list[ChannelUploader] = []
        self.requested = channels
        self.live: LiveTopology | None = None
        """Set by ``cdx channel upload``: ``run`` then takes new topology revisions (``reload``)."""
        self.threads: dict[str, threading.Thread] = {}

    def setup(self) -> None:
        """Create the topics (upload topics of the channels, positions, schemas, dead letters), each channel's
        with its own credentials (``kafka.security_of``): it may see only its own upload topic."""
        k = self.topology.kafka
        limit = max_message_config(k.max_message_bytes)
        shared = [TopicSpec(upload_positions_topic(self.prefix), 1, k.replication_factor, COMPACTED),
                  TopicSpec(schemas_topic(self.prefix), 1, k.replication_factor, COMPACTED),
                  TopicSpec(dlq_topic(self.prefix), 1, k.replication_factor)]
        for c in self.channels:
            config, topic = client_config(k.bootstrap_servers, k.security_of(c.id)), upload_topic(self.prefix, c.id)
            created = ensure_topics(config, [TopicSpec(topic, k.default_partitions, k.replication_factor, limit),
                                             *shared])
            for low in raise_max_message_bytes(config, [topic] if topic not in created else [], k.max_message_bytes):
                log.warning("cannot raise max.message.bytes of %s to kafka.max_message_bytes (%d): no right to alter"
                            " it; an administrator must, or larger rows will fail", low, k.max_message_bytes)
        self.store = SchemaStore(k.bootstrap_servers, schemas_topic(self.prefix), consumer_config=client_config(
            k.bootstrap_servers, k.shared_security(c.id for c in self.channels)))
        self.uploaders = [ChannelUploader(self.topology, c, self.store, self.options, threading.Event())
                          for c in self.channels]

    def stop(self) -> None:
        self._stop.set()
        for u in self.uploaders:
            u._stop.set()

    def start(self, uploader: ChannelUploader) -> None:
        """Run ``uploader`` in a thread of its own."""
        if self._stop.is_set():
            uploader._stop.set()
        t = threading.Thread(target=self._guard, args=(uploader,), name=f"upload-{uploader.id}", daemon=True)
        self.threads[uploader.id] = t
        t.start()

    def reload(self, topology: Topology) -> None:
        """Take a new topology revision between two transactions (see ``cdx.connectors.upload.reload``)."""
        reload_connector(self, topology, ChannelUploader)

    def run(self) -> None:
        """Run every channel until ``stop()``; a fatal error in one channel stops all and is raised.
        With ``live``, new topology revisions are taken meanwhile (``reload``)."""
        if not self.uploaders:
            self.setup()
        for u in self.uploaders:
            self.start(u)
        while any(t.is_alive() for t in self.threads.values()) or (self.live is not None
                                                                     and not self._stop.is_set()):
            if self.live is not None and not self._stop.is_set():
                self.live.offer(self.reload)
            for t in list(self.threads.values()):
                t.join(0.2)
            if not self.threads:
                self._stop.wait(0.5)
            if any(u.error is not None for u in self.uploaders):
                self.stop()
        for t in self.threads.values():
            t.join()
        if self.store is not None:
            self.store.close()
        failed = [u for u in self.uploaders if u.error is not None]
        if failed:
            err = failed[0].error
            if isinstance(err, FatalError):
                raise err
            raise FatalError(f"channel {failed[0].id}: upload stopped: {err}") from err

    def _guard(self, uploader: ChannelUploader) -> None:
        try:
            uploader.run()
        except BaseException as exc:  # recorded in uploader.error; run() stops the others
            log.debug("upload worker for %s ended: %r", uploader.id, exc)
