"""HQ upload sink: every channel's upload topic -> HQ tables, insert-only, exactly once.

Contract
- One consumer group (``<prefix>-hq-upload``) reads the upload topics of every uploading
  channel (``read_committed``). A batch of records is applied in **one HQ transaction** together
  with the consumed offsets (``cdx_state``, namespace = the group id, key ``<topic>/<partition>``)
  and one upload-session row per (channel, subjob) (:mod:`cdx.connectors.upload.sessions`). Offsets
  come from HQ on every partition assignment; Kafka's committed offsets are only written
  afterwards, for lag monitoring.
- Insert-only: a row whose (origin channel, counter) is already at HQ (column ``CDXORIGINID``,
  when the HQ table has it) or whose primary key is already there is counted as a duplicate and
  left untouched, never updated nor inserted twice.
- The channel a row belongs to is the topic it came on (so a channel can only write its own
  rows once its credentials are limited to its topic); a record naming another channel is refused.
- A record that cannot be used (undecodable, unknown table, missing key column, refused by the
  database after isolating it) goes to the dead-letter topic with the reason; its offset still
  advances in the HQ transaction. Dead letters are flushed before that transaction commits (a
  crash in between may repeat a dead letter, never lose one).
- A batch that fails (HQ unreachable, deadlock...) is rolled back, recorded as a ``Failed``
  session when HQ answers, and retried with backoff.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import OFFSET_STORED, Consumer, KafkaError, Message, Producer, TopicPartition

from cdx.cleanup import quietly
from cdx.codec import SchemaStore, UnknownSchemaError, make_codec
from cdx.connectors.upload import metrics
from cdx.connectors.upload.post_processing import PostUploadHook
from cdx.connectors.upload.records import EXTENSION_HEADER, SUBJOB_HEADER, dlq_record, produce_and_flush
from cdx.connectors.upload.reload import reload_upload_sink
from cdx.connectors.upload.sessions import (
    APPLIED,
    FAILED,
    Session,
    ensure_sessions_table,
    insert_sessions,
    prune_sessions,
    utcnow,
)
from cdx.connectors.upload.source import counter_hq_name, db_error, source_table
from cdx.connectors.upload.uploader import upload_subjobs_for, uploading_channels
from cdx.dialects import ColumnInfo, Connection, LogicalType, get_dialect, key_columns
from cdx.errors import CdxError, ConfigError, FatalError, RetriableError, SkippableError
from cdx.kafka.admin import COMPACTED, TopicSpec, ensure_topics
from cdx.kafka.batches import next_batch
from cdx.kafka.config import client_config, consumer_config, producer_config
from cdx.topics import dlq_topic, schemas_topic, upload_topic
from cdx.topology import DATAAREAID, Subjob, TableRef, Topology
from cdx.topology.live import LiveTopology

log = logging.getLogger("cdx.upload.sink")

ORIGIN_COLUMN = "CDXORIGINID"
"""HQ column holding the id of the channel a row was uploaded from (optional but recommended:
with the counter it makes (channel, counter) unique)."""
COMPONENT = "hq-upload-sink"


def sink_group_id(prefix: str) -> str:
    return f"{prefix}-hq-upload"


@dataclass
class SinkOptions:
    batch_size: int = 5000
    poll_timeout: float = 0.1
    """Longest wait for a batch to fill (a batch is applied as soon as it is full or this passes)."""
    instance_id: str | None = None
    """Kafka static membership (``group.instance.id``): a restarted sink gets its partitions back at once."""
    session_timeout_ms: int = 10_000
    max_backoff: float = 30.0
    unknown_schema_wait: float = 300.0
    """How long a record whose writer schema cannot be found is retried before it is dead-lettered."""
    session_retention_days: float = 14.0
    """Upload sessions older than this are deleted (0: keep by count only), like download sessions."""
    session_max_rows: int = 50_000
    """Upload sessions kept per channel at most (0: no limit)."""
    prune_every: int = 1000
    """Batches between two retention checks (also checked whenever HQ is (re)connected)."""


class HqTable:
    """An upload subjob's HQ table, introspected: columns, primary key, origin and counter columns."""

    def __init__(self, subjob: Subjob, conn: Connection, dialect: Any) -> None:
        self.subjob = subjob
        self.ref: TableRef = subjob.hq_table
        self.name = str(self.ref)
        self.job = subjob.scheduled_by[0]
        cols = dialect.introspect_columns(conn, self.ref.schema, self.ref.name)
        self.columns: dict[str, ColumnInfo] = {c.name.casefold(): c for c in cols}
        self.key = key_columns(cols)
        missing = [f.name for f in subjob.all_fields() if f.name.casefold() not in self.columns]
        if missing:
            raise ConfigError(f"HQ table {self.name} lacks the columns {missing} of upload subjob {subjob.id}; "
                              "add them or fix the subjob's fields")
        origin = self.columns.get(ORIGIN_COLUMN.casefold())
        self.origin = origin.name if origin else None
        self.counter = self.columns[counter_hq_name(subjob).casefold()].name
        ext = subjob.extension
        self.extension_fields = {f.name.casefold() for f in ext.fields} if ext and not ext.override_target else set()
        if self.origin is None:
            log.warning("HQ table %s has no %s column: duplicates are recognised by primary key only", self.name,
                        ORIGIN_COLUMN)

    def column(self, field_name: str) -> str | None:
        c = self.columns.get(field_name.casefold())
        return c.name if c else None


@dataclass
class _Item:
    msg: Message
    counter: int
    values: dict[str, Any]


@dataclass
class _Group:
    channel: str
    table: HqTable
    topic: str
    partition: int
    items: list[_Item] = field(default_factory=list)
    first_offset: int = -1
    last_offset: int = -1
    inserted: int = 0
    duplicates: int = 0
    dead: int = 0


@dataclass
class _Dead:
    msg: Message
    reason: str
    channel: str | None
    table: str | None
    counter: int | None
    row: dict[str, Any] | None = None
    isolated: bool = False
    """Refused by HQ while applying its group (counted in that group's session)."""


def _text(v: str | bytes | None) -> str:
    if v is None:
        return ""
    return v.decode(errors="replace") if isinstance(v, bytes) else str(v)


def _naive_utc(v: Any) -> Any:
    if isinstance(v, dt.datetime) and v.tzinfo is not None:
        return v.astimezone(dt.UTC).replace(tzinfo=None)
    return v


class UploadSink:
    """Consumes upload topics and applies them to HQ (see module docstring)."""

    def __init__(self, topology: Topology, options: SinkOptions | None = None) -> None:
        self.topology = topology
        self.options = options or SinkOptions()
        k = topology.kafka
        self.prefix = k.topic_prefix
        self.group_id = sink_group_id(self.prefix)
        self.base_config = client_config(k.bootstrap_servers, k.security)
        self.dialect = get_dialect(topology.hq.dialect.value)
        self.channels = {upload_topic(self.prefix, c.id): c.id for c in uploading_channels(topology)}
        self.subjobs: dict[str, Subjob] = {}
        self.by_source: dict[str, Subjob] = {}
        for c in uploading_channels(topology):
            for s in upload_subjobs_for(topology, c.id):
                self.subjobs[s.id.casefold()] = s
                self.by_source[str(source_table(s)).casefold()] = s
        self.dlq_topic = dlq_topic(self.prefix)
        self.conn: Connection | None = None
        self.tables: dict[str, HqTable] = {}
        self.consumer: Consumer | None = None
        self.dlq: Producer | None = None
        self._stop = threading.Event()
        self._warned: set[str] = set()
        self._cooperative = True
        self._unknown_since: dict[tuple[str, int | None, int | None], float] = {}
        self._plans: dict[tuple[str, bool, tuple[str, ...]], list[tuple[str, str, bool]]] = {}
        self._conn_thread = 0
        self._subscribed = False
        self.batches = 0
        self._batches_since_prune = 0
        self.post_upload = PostUploadHook(topology.hq.post_upload, self.dialect)
        self.live: LiveTopology | None = None
        """Set by ``cdx hq upload-sink``: new topology revisions are taken between batches (``reload``)."""

    def reload(self, topology: Topology) -> None:
        """Take a new topology revision (see ``cdx.connectors.upload.reload.reload_upload_sink``)."""
        reload_upload_sink(self, topology, HqTable)

    # ------------------------------------------------------------------------------ set-up
    def setup(self) -> None:
        k = self.topology.kafka
        specs = [TopicSpec(t, k.default_partitions, k.replication_factor) for t in self.channels]
        specs += [TopicSpec(schemas_topic(self.prefix), 1, k.replication_factor, COMPACTED),
                  TopicSpec(self.dlq_topic, 1, k.replication_factor)]
        ensure_topics(self.base_config, specs)
        try:
            self._connect()
        except RetriableError as exc:
            log.warning("%s; waiting for it", exc)
        store = SchemaStore(k.bootstrap_servers, schemas_topic(self.prefix), consumer_config=dict(self.base_config))
        registry = k.codec_config()
        self.codec = make_codec(registry, store=store)
        self.dlq = Producer(producer_config(self.base_config))
        extra: dict[str, Any] = {"session.timeout.ms": self.options.session_timeout_ms,
                                 "max.poll.interval.ms": 1_800_000,  # a batch may be retried while HQ is down
                                 "heartbeat.interval.ms": max(1000, self.options.session_timeout_ms // 5)}
        if self.options.instance_id:
            extra["group.instance.id"] = self.options.instance_id
        config = {**consumer_config(self.base_config, self.group_id), **extra}
        self._cooperative = "cooperative" in str(config.get("partition.assignment.strategy", ""))
        self.consumer = Consumer(config)
        if self.conn is not None:
            self._subscribe()

    def _subscribe(self) -> None:
        """Join the group (once HQ answers: assignments read their offsets from it)."""
        if self.channels and self.consumer is not None and not self._subscribed:
            self.consumer.subscribe(sorted(self.channels), on_assign=self._on_assign)
            self._subscribed = True

    def _connect(self) -> None:
        if self.conn is not None:
            quietly(self.conn.close, "HQ upload sink: closing the HQ connection", log)
            self.conn = None
        try:
            conn = self.dialect.connect(self.topology.hq.dsn)
        except Exception as exc:
            raise RetriableError(f"HQ database {self.topology.hq.redacted()} is unreachable: {exc}") from exc
        try:
            with self.dialect.transaction(conn):
                self.dialect.ensure_state_table(conn)
                ensure_sessions_table(conn, self.dialect)
                self._prune(conn)
                self.post_upload.ensure(conn)
            tables = {}
            for s in self.subjobs.values():
                tables[s.id.casefold()] = HqTable(s, conn, self.dialect)
            conn.rollback()
            self.post_upload.run_pending(conn)  # calls a killed sink left queued
        except BaseException as exc:
            quietly(conn.close, "HQ upload sink: closing a connection that failed to set up", log)
            if isinstance(exc, CdxError):
                raise
            raise db_error(self.dialect, exc, "HQ database") from exc
        self.conn = conn
        self._conn_thread = threading.get_ident()
        self.tables = tables

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Start every assigned partition at the offset stored in HQ (beginning if none)."""
        try:
            assert self.conn is not None
            stored = self.dialect.read_state(self.conn, self.group_id)
            self.conn.rollback()
            for tp in partitions:
                value = stored.get(f"{tp.topic}/{tp.partition}")
                tp.offset = int(value) if value is not None else -2  # OFFSET_BEGINNING
        except Exception as exc:
            log.warning("cannot read upload sink offsets from HQ (%s); using Kafka's committed offsets", exc)
            for tp in partitions:
                tp.offset = OFFSET_STORED
        log.info("assigned %s", ", ".join(f"{tp.topic}[{tp.partition}]@{tp.offset}" for tp in partitions))
        if self._cooperative:
            consumer.incremental_assign(partitions)
        else:
            consumer.assign(partitions)

    # -------------------------------------------------------------------------------- loop
    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        if self.consumer is None:
            self.setup()
        assert self.consumer is not None
        backoff = 0.5
        while self.conn is None or self._conn_thread != threading.get_ident():
            try:
                self._connect()  # (again: SQLite connections belong to the thread that opened them)
            except RetriableError as exc:
                log.warning("%s; retrying in %.1fs", exc, backoff)
                if self._stop.wait(backoff):
                    self.close()
                    return
                backoff = min(backoff * 2, self.options.max_backoff)
        self._subscribe()
        try:
            while not self._stop.is_set():
                if self.live is not None:
                    self.live.offer(self.reload)
                msgs = next_batch(self.consumer, self.options.batch_size, self.options.poll_timeout)
                batch = []
                for m in msgs:
                    err = m.error()
                    if err is None:
                        batch.append(m)
                    elif err.code() != KafkaError._PARTITION_EOF:
                        if err.fatal() or err.code() == KafkaError._FATAL:  # the process must restart
                            raise FatalError(f"Kafka consumer failed: {err.str()}")
                        log.warning("consumer: %s", err.str())
                if batch:
                    self.apply_with_retry(batch)
        finally:
            self.close()

    def close(self) -> None:
        if self.consumer is not None:
            quietly(self.consumer.close, "HQ upload sink: closing the consumer", log)
            self.consumer = None
        if self.dlq is not None:
            self.dlq.flush(10)
        if self.conn is not None:
            quietly(self.conn.close, "HQ upload sink: closing the HQ connection", log)
            self.conn = None

    def apply_with_retry(self, msgs: Sequence[Message]) -> None:
        """Apply one batch; retriable failures are recorded, backed off and retried (the same batch)."""
        backoff = 0.5
        while True:
            try:
                if self.conn is None:
                    self._connect()
                self.apply(msgs)
                return
            except RetriableError as exc:
                metrics.SINK_FAILURES.inc()
                log.warning("upload batch failed, retrying in %.1fs: %s", backoff, exc)
                self._record_failure(msgs, exc)
                if self._stop.wait(backoff):
                    return  # not applied, offsets not stored: read again on the next start
                backoff = min(backoff * 2, self.options.max_backoff)
                try:
                    self._connect()
                except RetriableError:
                    pass
            except FatalError as exc:
                self._record_failure(msgs, exc)
                raise

    # ------------------------------------------------------------------------------- apply
    def _decode(self, msgs: Sequence[Message]) -> tuple[list[_Group], list[_Dead], dict[str, str]]:
        groups: dict[tuple[str, str], _Group] = {}
        dead: list[_Dead] = []
        offsets: dict[str, str] = {}
        for msg in msgs:
            topic, partition, offset = msg.topic() or "", msg.partition() or 0, msg.offset() or 0
            offsets[f"{topic}/{partition}"] = str(offset + 1)
            channel = self.channels.get(topic)
            if channel is None:
                dead.append(_Dead(msg, f"topic {topic} is not the upload topic of a channel", None, None, None))
                continue
            item = self._item(msg, channel, dead)
            if item is None:
                continue
            table, it = item
            g = groups.get((channel, table.subjob.id))
            if g is None:
                g = groups[(channel, table.subjob.id)] = _Group(channel, table, topic, partition, first_offset=offset)
            g.items.append(it)
            g.last_offset = offset
        return list(groups.values()), dead, offsets

    def _item(self, msg: Message, channel: str, dead: list[_Dead]) -> tuple[HqTable, _Item] | None:
        """One record as an HQ row (the value alone says it all: ``source.table`` and ``source.change_version``
        repeat the key's table and counter, so the key is not decoded)."""
        topic = msg.topic() or ""
        try:
            env = self.codec.decode_value(topic, msg.value())
        except UnknownSchemaError as exc:
            # A schema committed by another producer can sit above the schemas topic's last stable
            # offset while some transaction there is open: wait for it before giving up on the record.
            first = self._unknown_since.setdefault((topic, msg.partition(), msg.offset()), time.monotonic())
            if time.monotonic() - first < self.options.unknown_schema_wait:
                raise RetriableError(f"a record on {topic} names a schema not readable yet: {exc}") from exc
            dead.append(_Dead(msg, f"undecodable record: {exc}", channel, None, None))
            return None
        except SkippableError as exc:
            dead.append(_Dead(msg, f"undecodable record: {exc}", channel, None, None))
            return None
        source = (env or {}).get("source") or {}
        table_name = f"{source.get('schema')}.{source.get('table')}" if source.get("schema") else \
            str(source.get("table", ""))
        counter = source.get("change_version")
        if env is None or env.get("op") != "c" or env.get("after") is None or not isinstance(counter, int):
            dead.append(_Dead(msg, "not an upload record (needs op 'c' with 'after' and the counter in"
                                   " source.change_version)", channel, table_name or None,
                              counter if isinstance(counter, int) else None))
            return None
        headers = dict(msg.headers() or [])
        subjob = None
        if SUBJOB_HEADER in headers:
            subjob = self.subjobs.get(_text(headers[SUBJOB_HEADER]).casefold())
        subjob = subjob or self.by_source.get(table_name.casefold())
        if subjob is None or subjob.id.casefold() not in self.tables:
            dead.append(_Dead(msg, f"no upload subjob reads {table_name!r}", channel, table_name, counter))
            return None
        table = self.tables[subjob.id.casefold()]
        if str(source.get("name", channel)) != channel:
            dead.append(_Dead(msg, f"record names channel {source.get('name')!r} but came on channel {channel!r}'s"
                                   " topic", channel, table_name, counter, env["after"]))
            return None
        after: dict[str, Any] = env["after"]
        absent = _text(headers.get(EXTENSION_HEADER)) == "absent"
        plan = self._plans.get((subjob.id, absent, tuple(after)))
        if plan is None:
            plan = self._plans[(subjob.id, absent, tuple(after))] = self._plan(table, list(after), absent)
        values: dict[str, Any] = {col: (_naive_utc(after[f]) if ts else after[f]) for f, col, ts in plan}
        if table.origin is not None:
            values[table.origin] = channel
        values.setdefault(table.counter, counter)
        missing = [k for k in table.key if values.get(k) is None]
        if missing:
            dead.append(_Dead(msg, f"missing key columns {missing} of HQ table {table.name}", channel, table_name,
                              counter, after))
            return None
        return table, _Item(msg, counter, values)

    def _plan(self, table: HqTable, fields: list[str], absent: bool) -> list[tuple[str, str, bool]]:
        """``(record field, HQ column, is a timestamp)`` for one record layout (cached per writer layout)."""
        out = []
        for name in fields:
            col = table.columns.get(name.casefold())
            if col is None:
                if name.casefold() != DATAAREAID.casefold() and f"{table.name}.{name}" not in self._warned:
                    self._warned.add(f"{table.name}.{name}")
                    log.warning("HQ table %s has no column %s: the uploaded value is dropped", table.name, name)
                continue
            if absent and name.casefold() in table.extension_fields:
                continue  # no extension row in the channel: HQ column defaults apply
            out.append((name, col.name, col.logical_type is LogicalType.TIMESTAMP))
        return out

    def apply(self, msgs: Sequence[Message]) -> None:
        """Apply one consumed batch in one HQ transaction (see module docstring)."""
        assert self.conn is not None
        started = utcnow()
        groups, dead, offsets = self._decode(msgs)
        d, conn = self.dialect, self.conn
        try:
            with d.transaction(conn):
                self._insert_groups(groups)
                self._finish(groups, dead, offsets, started)
        except SkippableError as exc:
            log.warning("a row of this batch is refused by HQ (%s): applying row by row to isolate it", exc)
            self._isolate(groups, dead, offsets, started)
        except CdxError:
            raise
        except Exception as exc:
            raise db_error(d, exc, "applying uploads to HQ") from exc
        self._unknown_since.clear()
        self._after_commit(groups, dead, msgs)
        self.post_upload.run_pending(conn)

    def _existing_counters(self, groups: Sequence[_Group]) -> dict[str, set[int]]:
        """Counters of the groups' (one HQ table's) rows already at HQ, by channel: one query."""
        t = groups[0].table
        if t.origin is None:
            return {}
        d, p = self.dialect, self.dialect.placeholder
        origin, counter = d.quote_ident(t.origin), d.quote_ident(t.counter)
        where, params = [], []
        for g in groups:
            if g.items:
                where.append(f"({origin} = {p} AND {counter} BETWEEN {p} AND {p})")
                params += [g.channel, min(i.counter for i in g.items), max(i.counter for i in g.items)]
        if not where:
            return {}
        cur = self.conn.cursor()  # type: ignore[union-attr]
        cur.execute(f"SELECT {origin}, {counter} FROM {d.qualified(t.ref.schema, t.ref.name)} WHERE "
                    + " OR ".join(where), params)
        out: dict[str, set[int]] = {}
        for o, c in cur.fetchall():
            out.setdefault(str(o), set()).add(int(c))
        return out

    def _insert_rows(self, t: HqTable, items: Sequence[_Item]) -> int:
        """insert_ignore_existing of ``items`` (grouped by column set); returns the count inserted."""
        by_columns: dict[tuple[str, ...], list[list[Any]]] = {}
        for it in items:
            cols = tuple(it.values)
            by_columns.setdefault(cols, []).append([it.values[c] for c in cols])
        inserted = 0
        for cols, rows in by_columns.items():
            try:
                inserted += self.dialect.insert_ignore_existing(self.conn, t.ref.schema, t.ref.name, list(cols), t.key,
                                                                rows)
            except CdxError:
                raise
            except Exception as exc:
                raise db_error(self.dialect, exc, f"inserting into {t.name}") from exc
        return inserted

    def _insert_groups(self, groups: Sequence[_Group]) -> None:
        """Insert every group's new rows; sets each group's inserted and duplicate counts.

        Per HQ table: rows whose (channel, counter) is at HQ already are duplicates (one query); the
        rest of all channels go in one bulk insert inside a savepoint. If the database inserted fewer
        (some primary keys existed: counted per channel only by inserting per channel), the
        savepoint is rolled back and the channels are inserted one by one.
        """
        by_table: dict[str, list[_Group]] = {}
        for g in groups:
            by_table.setdefault(g.table.name, []).append(g)
        savepoints = self.dialect.name in ("postgresql", "sqlite")
        for gs in by_table.values():
            t = gs[0].table
            known = self._existing_counters(gs)
            fresh: dict[int, list[_Item]] = {}
            for g in gs:
                have, seen = known.get(g.channel, set()), set()
                new = []
                for it in g.items:
                    if it.counter not in have and it.counter not in seen:
                        seen.add(it.counter)
                        new.append(it)
                fresh[id(g)] = new
            total = sum(len(v) for v in fresh.values())
            if savepoints and len(gs) > 1:
                self.conn.execute("SAVEPOINT cdx_upload")  # type: ignore[union-attr]
                if self._insert_rows(t, [it for g in gs for it in fresh[id(g)]]) == total:
                    self.conn.execute("RELEASE SAVEPOINT cdx_upload")  # type: ignore[union-attr]
                    for g in gs:
                        g.inserted, g.duplicates = len(fresh[id(g)]), len(g.items) - len(fresh[id(g)])
                    continue
                self.conn.execute("ROLLBACK TO SAVEPOINT cdx_upload")  # type: ignore[union-attr]
            for g in gs:
                g.inserted = self._insert_rows(t, fresh[id(g)])
                g.duplicates = len(g.items) - g.inserted

    def _isolate(self, groups: list[_Group], dead: list[_Dead], offsets: dict[str, str], started: dt.datetime) -> None:
        """Row by row, each in its own transaction (inserts are idempotent): refused rows go to ``dead``."""
        d, conn = self.dialect, self.conn
        for g in groups:
            g.inserted = g.duplicates = g.dead = 0
            for it in g.items:
                try:
                    with d.transaction(conn):
                        one = _Group(g.channel, g.table, g.topic, g.partition, [it])
                        known = self._existing_counters([one]).get(g.channel, set())
                        n = 0 if it.counter in known else self._insert_rows(g.table, [it])
                    g.inserted += n
                    g.duplicates += 1 - n
                except SkippableError as exc:
                    g.dead += 1
                    dead.append(_Dead(it.msg, f"refused by HQ: {exc}", g.channel, str(g.table.name), it.counter,
                                      it.values, isolated=True))
        try:
            with d.transaction(conn):
                self._finish(groups, dead, offsets, started)
        except CdxError:
            raise
        except Exception as exc:
            raise db_error(d, exc, "storing upload offsets at HQ") from exc

    def _finish(self, groups: list[_Group], dead: list[_Dead], offsets: dict[str, str], started: dt.datetime) -> None:
        """Offsets and sessions (caller's HQ transaction); dead letters are flushed first."""
        self._dead_letters(dead)
        self.dialect.write_state(self.conn, self.group_id, offsets)
        finished = utcnow()
        sessions = [Session(g.channel, g.table.job, g.table.subjob.id, g.table.name, g.topic, g.partition,
                            g.first_offset, g.last_offset, min(i.counter for i in g.items),
                            max(i.counter for i in g.items), len(g.items), g.inserted, g.duplicates,
                            g.dead, APPLIED, started, finished) for g in groups if g.items]
        by_channel: dict[str, int] = {}
        for x in dead:
            if not x.isolated:
                channel = x.channel or "?"
                by_channel[channel] = by_channel.get(channel, 0) + 1
        for channel, n in by_channel.items():
            sessions.append(Session(channel, "", "", "", "", -1, -1, -1, rows_received=n, rows_dead_lettered=n,
                                    status=APPLIED, started_at=started, finished_at=finished,
                                    error=f"{n} records dead-lettered before reaching a table"))
        self.post_upload.queue(self.conn, sessions)
        insert_sessions(self.conn, self.dialect, sessions)
        self._batches_since_prune += 1
        if self._batches_since_prune >= self.options.prune_every:
            self._prune(self.conn)

    def _prune(self, conn: Connection) -> None:
        """Upload-session retention (caller's HQ transaction)."""
        self._batches_since_prune = 0
        deleted = prune_sessions(conn, self.dialect, self.options.session_retention_days, self.options.session_max_rows)
        if deleted:
            log.info("deleted %d upload sessions beyond the retention", deleted)

    def _dead_letters(self, dead: list[_Dead]) -> None:
        if not dead:
            return
        assert self.dlq is not None
        produce_and_flush(self.dlq, self.dlq_topic, [
            dlq_record(COMPONENT, x.reason, channel=x.channel, table=x.table, counter=x.counter, topic=x.msg.topic(),
                       partition=x.msg.partition(), offset=x.msg.offset(), row=x.row, value=x.msg.value(),
                       key=x.msg.key()) for x in dead])

    def _after_commit(self, groups: list[_Group], dead: list[_Dead], msgs: Sequence[Message]) -> None:
        self.batches += 1
        metrics.SINK_BATCHES.inc()
        for g in groups:
            metrics.SINK_ROWS.labels(g.channel, g.table.name, "inserted").inc(g.inserted)
            metrics.SINK_ROWS.labels(g.channel, g.table.name, "duplicate").inc(g.duplicates)
        for x in dead:
            metrics.DEAD_LETTERS.labels(COMPONENT).inc()
            log.error("dead letter: channel %s, table %s, counter %s (%s[%s]@%s): %s", x.channel, x.table, x.counter,
                      x.msg.topic(), x.msg.partition(), x.msg.offset(), x.reason)
        if self.consumer is not None:
            last: dict[tuple[str, int], int] = {}
            for m in msgs:
                last[(m.topic() or "", m.partition() or 0)] = (m.offset() or 0) + 1
            offsets = [TopicPartition(t, p, o) for (t, p), o in last.items()]
            consumer = self.consumer
            # monitoring only: HQ holds the offsets that count
            quietly(lambda: consumer.commit(offsets=offsets, asynchronous=True),
                    "HQ upload sink: committing monitoring offsets", log)

    def _record_failure(self, msgs: Sequence[Message], exc: BaseException) -> None:
        """A ``Failed`` session per (channel, partition) of the batch, if HQ answers (best effort)."""
        try:
            if self.conn is None:
                return
            now = utcnow()
            spans: dict[tuple[str, int], list[int]] = {}
            for m in msgs:
                spans.setdefault((m.topic() or "", m.partition() or 0), []).append(m.offset() or 0)
            sessions = [Session(self.channels.get(t, t), "", "", "", t, p, min(o), max(o), rows_received=len(o),
                                status=FAILED, started_at=now, finished_at=now, error=str(exc))
                        for (t, p), o in spans.items()]
            self.conn.rollback()
            with self.dialect.transaction(self.conn):
                insert_sessions(self.conn, self.dialect, sessions)
        except Exception as err:
            log.debug("could not record the failed session: %s", err)

