"""The batch-apply function: one database transaction holding rows, offsets and watermarks.

``write_batch`` is resumable and idempotent: it reads the sink state inside its transaction,
plans against it (re-sends skipped, filters applied, changes collapsed per key) and writes rows
and the new state together, so after a crash at any point the database holds either the whole
batch with its offsets or neither. Re-running it on records already applied only skips them.

Order inside the transaction: tables are created or widened (an existing table that conflicts
with the records stops the sink first, see ``conflicts``); deletes of tables that no foreign key
touches, child-before-parent (each key has one net change per batch, so deleting first cannot
change the result, and a row whose key changed frees its secondary unique values, e.g. a barcode,
before the row under its new key takes them); upserts in parent-before-child order; then the
deletes of tables with foreign keys, child-before-parent (a child re-pointed before its old parent
goes); then dead letters are delivered (only once the rows went in, so a batch that fails and is
split does not deliver them twice; if delivery fails nothing commits and the batch is retried);
then the state and the ``Applied`` download session (``sessions``), then the commit. A crash
between delivery and commit delivers the letter again on restart: dead letters are at-least-once,
and carry their group topic/partition/offset to tell repeats apart.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cdx.connectors.sink.plan import Plan, TableBatch, plan_batch
from cdx.connectors.sink.records import Record
from cdx.connectors.sink.sessions import APPLIED, BATCH, Session, SessionLog
from cdx.connectors.sink.spec import SinkSpec
from cdx.connectors.sink.state import SinkState, StateStore
from cdx.connectors.sink.tables import TableManager
from cdx.dialects import Connection, Dialect
from cdx.stage.sessions import utcnow

BULK_ROWS = 10_000
"""Rows of one table in one batch from which ``upsert`` tries the dialect's plain bulk load first (above a
streaming sink's batches: ``cdx channel bootstrap`` runs with larger ones)."""
DeadLetterFn = Callable[[Record, str], None]
"""Delivers one record to the dead-letter topic; returns only once it is durable."""


@dataclass
class Written:
    """What ``apply_plan`` wrote: rows upserted (inserted or updated: the bulk upserts do not tell
    which), rows deleted (as the database counts them), and the tables touched."""

    upserted: int = 0
    deleted: int = 0
    tables: list[str] = field(default_factory=list)


@dataclass
class BatchResult:
    plan: Plan
    state: SinkState
    """The state after this batch (as committed)."""
    written: Written = field(default_factory=Written)


def apply_plan(conn: Connection, dialect: Dialect, tables: TableManager, plan: Plan, spec: SinkSpec) -> Written:
    """Write the plan's rows (no commit). See the module docstring for the order."""
    ordered = plan.ordered(spec)
    for tb in ordered:
        tables.ensure(conn, tb.shapes.values())
    written = Written(tables=[f"{tb.schema}.{tb.table}" for tb in ordered])
    deletes = {id(tb): keys for tb in ordered if (keys := tb.deletes())}
    first = {i for tb in ordered if (i := id(tb)) in deletes and not tables.has_foreign_keys(conn, tb.schema, tb.table)}

    def delete(tb: TableBatch) -> None:
        written.deleted += max(dialect.delete_rows(conn, tb.schema, tb.table, tb.key_names, deletes[id(tb)]), 0)

    for tb in reversed(ordered):
        if id(tb) in first:
            delete(tb)
    for tb in ordered:
        for columns, rows in tb.upserts().items():
            upsert(conn, dialect, tables, tb, columns, rows)
            written.upserted += len(rows)
    for tb in reversed(ordered):
        if id(tb) in deletes and id(tb) not in first:
            delete(tb)
    return written


def upsert(conn: Connection, dialect: Dialect, tables: TableManager, tb: TableBatch, columns: tuple[str, ...],
           rows: list[tuple[Any, ...]]) -> None:
    """Upsert one table's rows (distinct keys: the plan collapsed them). ``BULK_ROWS`` or more (a bootstrap's
    batches) go through ``Dialect.load_rows`` (PostgreSQL: ``COPY`` into the table, the upsert only if a key
    exists), until a table's keys are found to exist: from then on that table is upserted directly."""
    target = (tb.schema, tb.table)
    if len(rows) >= BULK_ROWS and target not in tables.keys_exist:
        if not dialect.load_rows(conn, tb.schema, tb.table, columns, tb.key_names, rows):
            tables.keys_exist.add(target)
        return
    dialect.upsert_rows(conn, tb.schema, tb.table, columns, tb.key_names, rows)


def batch_session(spec: SinkSpec, records: Sequence[Record], plan: Plan | None, written: Written | None,
                  started: dt.datetime, *, kind: str = BATCH, status: str = APPLIED,
                  error: str | None = None) -> Session:
    """The download session describing ``records`` (and what their plan did, when applied)."""
    offsets: dict[int, tuple[int, int]] = {}
    subjobs: dict[str, None] = {}
    targets: dict[tuple[str, str], None] = {}
    newest = 0
    for rec in records:
        span = offsets.get(rec.partition)
        offsets[rec.partition] = (rec.offset, rec.offset) if span is None else (min(span[0], rec.offset), rec.offset)
        ch = rec.change
        if ch is not None:
            subjobs[ch.subjob] = None
            targets[(ch.schema, ch.table)] = None
            if ch.source_ts_ms > newest:
                newest = ch.source_ts_ms
    jobs = dict.fromkeys(job for subjob in subjobs for job in spec.jobs_for(subjob))
    tables = {f"{schema}.{table}": None for schema, table in targets}
    if written is not None:
        tables.update(dict.fromkeys(written.tables))
    return Session(
        channel=spec.owner_id, kind=kind, group_topic=spec.topic, jobs=",".join(jobs), tables=",".join(tables),
        records=len(records), rows_upserted=written.upserted if written else 0,
        rows_deleted=written.deleted if written else 0, rows_filtered=plan.filtered if plan else 0,
        duplicates=plan.duplicates if plan else 0, dead_lettered=len(plan.dead) if plan else 0, offsets=offsets,
        last_source_ts=dt.datetime.fromtimestamp(newest / 1000, dt.UTC).replace(tzinfo=None) if newest else None,
        status=status, started_at=started, error=error)


def write_batch(conn: Connection, dialect: Dialect, store: StateStore, tables: TableManager, spec: SinkSpec,
                records: list[Record], dead_letter: DeadLetterFn, *, poison: str | None = None,
                sessions: SessionLog | None = None, guard: Callable[[Connection], None] | None = None
                ) -> BatchResult:
    """Apply ``records`` (one partition's records in offset order, partitions interleaved as consumed)
    and store the new offsets and watermarks (and, with ``sessions``, the download session) in the
    caller's open transaction (the channel target's). See the module docstring. ``guard`` runs first
    (the channel lock's ``confirm``: it raises to roll the batch back). The result's ``state`` is the one
    read in the transaction: merge the plan into it once committed; on a failure, ``tables.reset()``."""
    started = utcnow()
    if guard is not None:
        guard(conn)
    state = store.load(conn)
    plan = plan_batch(records, state, spec, poison)
    written = apply_plan(conn, dialect, tables, plan, spec)
    for rec, reason in plan.dead:
        dead_letter(rec, reason)
    store.save(conn, plan.offsets, plan.watermarks)
    if sessions is not None:
        sessions.record(conn, batch_session(spec, records, plan, written, started))
    return BatchResult(plan, state, written)

