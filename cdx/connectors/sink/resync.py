"""Missed-delete resync: rebuild a channel database from its compacted group topic.

A channel reads deletes as records on its group topic (a delete, then a tombstone). Kafka may
take them away before the channel read them:

- the stored offset of a partition is **below the topic's earliest offset** (records were
  deleted: ``delete_records``, ``retention.ms``/``retention.bytes`` on a ``compact,delete``
  topic); anything, deletes included, may be missing;
- the topic is compacted and the database was last known current (its newest ``batch`` or
  ``resync`` download session, or the ``caught_up`` mark an idle sink refreshes every 5 minutes)
  **longer ago than the topic's ``delete.retention.ms``** while it is behind: compaction keeps
  only the tombstone of a deleted key and drops it ``delete.retention.ms`` after cleaning, so a
  channel stopped for longer may never see the delete. (A channel running more than
  ``delete.retention.ms`` behind is exposed too: watch the lag in ``cdx status``.)

Either way the sink does not silently diverge; ``resync_reason`` says why and ``resync``:

1. reads the group topic from its beginning to the end offsets observed at the start, planning
   it like a sink would (fresh watermarks, row filters, collapse per key): the compacted state;
2. in **one database transaction**: upserts every live row (parents first), then, per table of
   the group (children first), deletes every row whose key is not live (keys not seen, or whose
   last change is a delete or was filtered out); delivers dead letters of records never seen
   before that cannot be decoded; stores offsets = the end offsets and watermarks = the higher of
   the old and the rebuilt ones; records a ``resync`` session. A crash leaves the old state (the
   next start resyncs again).
3. A row the database refuses is found by probing (transactions rolled back), dead-lettered and
   left as it is, and the transaction retried without it.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from cdx.connectors.sink import respec
from cdx.connectors.sink import sessions as hist
from cdx.connectors.sink.breaker import rolled_back
from cdx.connectors.sink.conflicts import primary_key
from cdx.connectors.sink.kafkaops import delete_retention_ms, read_range, watermarks
from cdx.connectors.sink.plan import TableBatch, plan_batch
from cdx.connectors.sink.records import Decoder, Record, decode_message
from cdx.connectors.sink.sessions import APPLIED, BATCH, FAILED, RESYNC, Session, SessionLog
from cdx.connectors.sink.spec import SinkSpec, target_key
from cdx.connectors.sink.state import SinkState, StateStore, Watermark
from cdx.dialects import Connection, Dialect
from cdx.errors import FatalError, RetriableError, SkippableError
from cdx.stage.sessions import utcnow

log = logging.getLogger("cdx.sink")

DeadLetterFn = Callable[[Record, str], None]
Key = tuple[Any, ...]
TKey = tuple[str, str]
Refused = Mapping[TKey, Mapping[Key, str]]
CHUNK = 5000
MAX_REFUSED = 200
CAUGHT_UP_KEY = "caught_up"
"""State key (sink namespace): UTC ISO time an idle sink last found nothing left to apply."""


def resync_reason(conn: Connection, dialect: Dialect, spec: SinkSpec, state: SinkState,
                  kafka_config: Mapping[str, Any]) -> str | None:
    """Why this database may have missed deletes (see module docstring), or None.

    Reads the sessions in its own short transaction.
    """
    if not state.offsets:
        return None
    lows, highs = watermarks(kafka_config, spec.topic)
    if not highs:
        return None
    below = {p: (o, lows[p]) for p, o in sorted(state.offsets.items()) if p in lows and o < lows[p]}
    if below:
        return ("stored offsets are below the group topic's earliest offsets ("
                + ", ".join(f"partition {p}: {o} < {low}" for p, (o, low) in below.items())
                + "): records were deleted before this database read them")
    behind = [p for p, end in highs.items() if end > state.offsets.get(p, lows.get(p, 0))]
    if not behind:
        return None
    retention = delete_retention_ms(kafka_config, spec.topic)
    if retention is None:
        return None
    with dialect.transaction(conn):
        last = hist.last(conn, dialect, spec.owner_id, APPLIED, kinds=(BATCH, RESYNC))
        mark = dialect.read_state(conn, StateStore(dialect, spec.topic).namespace).get(CAUGHT_UP_KEY)
    known = [t for t in (last.finished_at if last else None, _parse(mark)) if t is not None]
    if not known:
        return (f"the database is behind on a compacted topic (delete.retention.ms={retention}) and has no"
                " applied session on record: deletes may have been compacted away")
    age_ms = (utcnow() - max(known)).total_seconds() * 1000
    if age_ms > retention:
        return (f"the database was last current {age_ms / 1000:.1f}s ago, longer than the group topic's"
                f" delete.retention.ms ({retention} ms), and it is behind: tombstones may have been"
                " compacted away")
    return None


def _parse(text: str | None) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


@dataclass
class ResyncReport:
    reason: str
    ends: dict[int, int]
    records: int = 0
    live_rows: int = 0
    upserted: int = 0
    removed: int = 0
    refused: int = 0
    state: SinkState = field(default_factory=SinkState)


@dataclass
class _Compacted:
    """The group topic's compacted state as a sink would apply it, built chunk by chunk."""

    spec: SinkSpec
    stored: Mapping[int, int]
    state: SinkState = field(default_factory=SinkState)
    tables: dict[TKey, TableBatch] = field(default_factory=dict)
    origin: dict[tuple[TKey, Key], tuple[int, int]] = field(default_factory=dict)
    """(table, key) -> (partition, offset) of the record giving the live row (to dead-letter it)."""
    dead: list[tuple[Record, str]] = field(default_factory=list)
    records: int = 0
    filtered: int = 0
    duplicates: int = 0

    def add(self, records: list[Record]) -> None:
        self.records += len(records)
        plan = plan_batch(records, self.state, self.spec)
        self.state.merge(plan.offsets, plan.watermarks)
        self.filtered += plan.filtered
        self.duplicates += plan.duplicates
        # dead letters only for records this database never read (the others were dealt with then)
        self.dead += [(r, why) for r, why in plan.dead if r.offset >= self.stored.get(r.partition, 0)]
        for rec in records:
            if rec.change is not None and rec.shape is not None:
                try:
                    key = rec.shape.key_values(rec.change.key)
                except (KeyError, TypeError, ValueError):
                    continue
                self.origin[((rec.shape.schema, rec.shape.table), key)] = (rec.partition, rec.offset)
        for tk, tb in plan.tables.items():
            mine = self.tables.setdefault(tk, tb)
            if mine is not tb:
                mine.shapes.update(tb.shapes)
                for key, change in tb.changes.items():
                    mine.changes.pop(key, None)  # dict order = order of the last change (as in plan_batch)
                    mine.changes[key] = change


def _upsert_groups(tb: TableBatch, refused: Refused) -> dict[tuple[str, ...], list[tuple[Key, tuple[Any, ...]]]]:
    """The live rows of ``tb`` but the refused ones, grouped by column list, with their keys."""
    skip = refused.get((tb.schema, tb.table), {})
    out: dict[tuple[str, ...], list[tuple[Key, tuple[Any, ...]]]] = {}
    for key, (shape, row) in tb.changes.items():
        if row is not None and key not in skip:
            out.setdefault(shape.names, []).append((key, row))
    return out


class Resync:
    """One resync of one database (see module docstring)."""

    def __init__(self, conn: Connection, dialect: Dialect, spec: SinkSpec, store: StateStore, tables: Any,
                 decoder: Decoder, kafka_config: Mapping[str, Any], dead_letter: DeadLetterFn,
                 sessions: SessionLog, guard: Callable[[Connection], None] | None = None) -> None:
        self.conn, self.dialect, self.spec, self.store, self.tables = conn, dialect, spec, store, tables
        self.decoder, self.kafka_config, self.dead_letter, self.sessions = decoder, kafka_config, dead_letter, sessions
        self.guard = guard
        """Runs first in the writing transaction (the channel lock's ``confirm``)."""

    def run(self, reason: str) -> ResyncReport:
        started = utcnow()
        d, conn = self.dialect, self.conn
        with d.transaction(conn):
            old = self.store.load(conn)
        _, ends = watermarks(self.kafka_config, self.spec.topic)
        report = ResyncReport(reason, dict(ends))
        log.warning("sink %s: resync from the beginning of %s (to %s): %s", self.spec.owner_id, self.spec.topic,
                    ends, reason)
        compacted = self._read(ends, old.offsets)
        report.records = compacted.records
        refused: dict[TKey, dict[Key, str]] = {}
        while True:
            try:
                self._commit(compacted, old, ends, refused, report, started)
                break
            except Exception as e:
                self.tables.reset()
                if d.classify_error(e) is not SkippableError:
                    self._failed(report, started, e)
                    raise
                found = self._find_refused(compacted, refused)
                if found is None:
                    self._failed(report, started, e)
                    raise FatalError(f"resync of {self.spec.owner_id}: the database refuses the resync and no single"
                                     f" row could be isolated: {type(e).__name__}: {e}") from e
                tk, key, why = found
                refused.setdefault(tk, {})[key] = why
                if sum(len(v) for v in refused.values()) > MAX_REFUSED:
                    raise FatalError(f"resync of {self.spec.owner_id}: more than {MAX_REFUSED} rows refused;"
                                     f" last: {why}") from e
                log.warning("sink %s: resync: the database refuses %s key %s: %s", self.spec.owner_id,
                            ".".join(tk), key, why)
        log.warning("sink %s: resync done: %d records read, %d live rows written, %d rows removed, %d refused",
                    self.spec.owner_id, report.records, report.upserted, report.removed, report.refused)
        return report

    # ------------------------------------------------------------------------ reading
    def _read(self, ends: Mapping[int, int], stored: Mapping[int, int]) -> _Compacted:
        compacted = _Compacted(self.spec, stored)
        messages = read_range(self.kafka_config, self.spec.topic, ends)
        while chunk := [decode_message(self.decoder, m) for m in islice(messages, CHUNK)]:
            compacted.add(chunk)
        return compacted

    def _reread(self, partition: int, offset: int) -> Record:
        for msg in read_range(self.kafka_config, self.spec.topic, {partition: offset + 1}, {partition: offset}):
            return decode_message(self.decoder, msg)
        raise RetriableError(f"resync: record {self.spec.topic}[{partition}]@{offset} could not be read again")

    # ------------------------------------------------------------------------ writing
    def _targets(self, compacted: _Compacted) -> list[TKey]:
        """Every table of the group (topology order), then tables only the topic names; parents first."""
        seen: dict[tuple[str, str], TKey] = {}
        for t in (*self.spec.table_order, *compacted.tables):
            seen.setdefault(target_key(*t), t)
        return sorted(seen.values(), key=lambda t: self.spec.rank(*t))

    def _ordered(self, compacted: _Compacted) -> list[TableBatch]:
        return sorted(compacted.tables.values(), key=lambda t: self.spec.rank(t.schema, t.table))

    def _commit(self, compacted: _Compacted, old: SinkState, ends: Mapping[int, int],
                refused: Refused, report: ResyncReport, started: Any) -> None:
        """One sink transaction: upsert the compacted rows, delete the rows the topic no longer holds,
        dead-letter what was refused, save offsets and watermarks, record the session."""
        d, conn = self.dialect, self.conn
        ordered = self._ordered(compacted)
        with d.transaction(conn):
            if self.guard is not None:
                self.guard(conn)
            upserted = self._upsert_all(ordered, refused)
            removed, live_rows = self._delete_gone(compacted, ordered, refused)
            dead = compacted.dead + [(self._reread(*compacted.origin[(tk, key)]), f"resync: {why}")
                                     for tk, keys in refused.items() for key, why in keys.items()]
            for rec, why in dead:
                self.dead_letter(rec, why)
            marks = dict(old.watermarks)
            for k, w in compacted.state.watermarks.items():
                marks[k] = _higher(marks.get(k), w)
            offsets = {p: max(e, 0) for p, e in ends.items()}
            self.store.save(conn, offsets, marks)
            respec.remember(conn, self.dialect, self.store.namespace, self.spec)  # consistent with these filters
            session = Session(
                channel=self.spec.owner_id, kind=RESYNC, group_topic=self.spec.topic,
                jobs=",".join(dict.fromkeys(j for jobs in self.spec.subjob_jobs.values() for j in jobs)),
                tables=",".join(f"{tb.schema}.{tb.table}" for tb in ordered), records=compacted.records,
                rows_upserted=upserted, rows_deleted=removed, rows_filtered=compacted.filtered,
                duplicates=compacted.duplicates, dead_lettered=len(dead),
                offsets={p: (0, e - 1) for p, e in ends.items() if e > 0}, started_at=started,
                detail=f"resync: {report.reason}")
            self.sessions.record(conn, session)
        report.upserted, report.removed, report.live_rows = upserted, removed, live_rows
        report.refused = sum(len(v) for v in refused.values())
        report.state = SinkState(dict(offsets), marks)

    def _upsert_all(self, ordered: list[TableBatch], refused: Refused) -> int:
        """Upsert every live compacted row but the refused ones (parents first); returns the rows upserted."""
        d, conn = self.dialect, self.conn
        upserted = 0
        for tb in ordered:
            self.tables.ensure(conn, tb.shapes.values())
        for tb in ordered:
            for columns, items in _upsert_groups(tb, refused).items():
                d.upsert_rows(conn, tb.schema, tb.table, columns, tb.key_names, [r for _, r in items])
                upserted += len(items)
        return upserted

    def _delete_gone(self, compacted: _Compacted, ordered: list[TableBatch], refused: Refused) -> tuple[int, int]:
        """Delete, children first, every row whose key the topic no longer holds live (refused keys kept);
        returns (rows removed, live rows)."""
        d, conn = self.dialect, self.conn
        removed = live_rows = 0
        by_target = {target_key(t.schema, t.table): t for t in reversed(ordered)}
        for schema, table in reversed(self._targets(compacted)):
            if not d.table_exists(conn, schema, table):
                continue
            tb = by_target.get(target_key(schema, table))
            if tb is None:  # no live row left in the topic
                keep: set[Key] = set()
                key_names = primary_key(d.introspect_columns(conn, schema, table))
            else:
                keep = {k for k, (_, row) in tb.changes.items() if row is not None}
                live_rows += len(keep)
                keep |= set(refused.get((tb.schema, tb.table), {}))
                key_names = list(tb.key_names)
            gone = [k for k in self._keys(schema, table, key_names) if k not in keep]
            if gone:
                removed += max(d.delete_rows(conn, schema, table, key_names, gone), 0)
        return removed, live_rows

    def _keys(self, schema: str, table: str, key_names: list[str]) -> list[Key]:
        d = self.dialect
        cols = {c.name: c for c in d.introspect_columns(self.conn, schema, table, require_primary_key=False)}
        cur = self.conn.cursor()
        cur.execute(f"SELECT {d.columns_sql(key_names)} FROM {d.qualified(schema, table)}")
        return [tuple(d.decode(cols[n], v) for n, v in zip(key_names, row, strict=True)) for row in cur.fetchall()]

    def _failed(self, report: ResyncReport, started: Any, error: BaseException) -> None:
        self.sessions.record_alone(self.conn, Session(
            channel=self.spec.owner_id, kind=RESYNC, group_topic=self.spec.topic, records=report.records,
            status=FAILED, started_at=started, detail=f"resync: {report.reason}",
            error=f"resync failed: {type(error).__name__}: {error}"))

    # ------------------------------------------------------------------- isolating
    def _find_refused(self, compacted: _Compacted, refused: Refused) -> tuple[TKey, Key, str] | None:
        """The first live row the database refuses (probing in rolled-back transactions)."""
        ordered = self._ordered(compacted)
        for i, tb in enumerate(ordered):
            for columns, items in _upsert_groups(tb, refused).items():
                error = self._probe(ordered[:i], refused, tb, columns, items)
                if error is None:
                    continue
                while len(items) > 1:
                    half = items[:len(items) // 2]
                    e = self._probe(ordered[:i], refused, tb, columns, half)
                    if e is not None:
                        items, error = half, e
                    else:
                        items = items[len(items) // 2:]
                return (tb.schema, tb.table), items[0][0], f"{type(error).__name__}: {error}"
        return None

    def _probe(self, parents: list[TableBatch], refused: Refused, tb: TableBatch,
               columns: tuple[str, ...], items: list[tuple[Key, tuple[Any, ...]]]) -> Exception | None:
        """None if upserting ``items`` (after the parents' rows) works; the refusal otherwise. Rolls back."""
        d, conn = self.dialect, self.conn
        try:
            with rolled_back(d, conn):
                self._upsert_all(parents, refused)
                self.tables.ensure(conn, tb.shapes.values())
                d.upsert_rows(conn, tb.schema, tb.table, columns, tb.key_names, [r for _, r in items])
        except Exception as e:
            if d.classify_error(e) is SkippableError:
                return e
            raise
        finally:
            self.tables.reset()
        return None


def _higher(a: Watermark | None, b: Watermark) -> Watermark:
    if a is not None and a.gen != b.gen:  # re-route watermarks: the newer re-route's
        return b if _gen(b) > _gen(a) else a
    if a is None or b.offset > a.offset:
        return b
    if b.offset == a.offset:
        return Watermark(a.offset, a.targets | b.targets, a.gen)
    return a


def _gen(w: Watermark) -> int:
    return int(w.gen) if w.gen.isdigit() else -1
