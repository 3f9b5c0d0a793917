"""The batch-apply function: one database transaction holding rows, offsets and watermarks.

``commit_batch`` is resumable and idempotent: it reads the sink state inside its transaction,
plans against it (re-sends skipped, filters applied, changes collapsed per key) and writes rows
and the new state together, so after a crash at any point the database holds either the whole
batch with its offsets or neither. Re-running it on records already applied only skips them.

Order inside the transaction: tables are created or widened; upserts in parent-before-child
order; deletes in child-before-parent order; then dead letters are delivered (only once the
rows went in, so a batch that fails and is split does not deliver them twice; if delivery fails
nothing commits and the batch is retried); then the state, then the commit. A crash between
delivery and commit delivers the letter again on restart: dead letters are at-least-once, and
carry their group topic/partition/offset to tell repeats apart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cdx.dialects import Connection, Dialect
from connectors.sink.plan import Plan, plan_batch
from connectors.sink.records import Record
from connectors.sink.spec import SinkSpec
from connectors.sink.state import SinkState, StateStore
from connectors.sink.tables import TableManager

DeadLetterFn = Callable[[Record, str], None]
"""Delivers one record to the dead-letter topic; returns only once it is durable."""


@dataclass
class BatchResult:
    plan: Plan
    state: SinkState
    """The state after this batch (as committed)."""


def apply_plan(conn: Connection, dialect: Dialect, tables: TableManager, plan: Plan, spec: SinkSpec) -> int:
    """Write the plan's rows (no commit). Returns the number of rows upserted or deleted."""
    ordered = plan.ordered(spec)
    for tb in ordered:
        tables.ensure(conn, tb.shapes.values())
    written = 0
    for tb in ordered:
        for columns, rows in tb.upserts().items():
            dialect.upsert_rows(conn, tb.schema, tb.table, columns, tb.key_names, rows)
            written += len(rows)
    for tb in reversed(ordered):
        keys = tb.deletes()
        if keys:
            dialect.delete_rows(conn, tb.schema, tb.table, tb.key_names, keys)
            written += len(keys)
    return written


def commit_batch(conn: Connection, dialect: Dialect, store: StateStore, tables: TableManager, spec: SinkSpec,
                 records: list[Record], dead_letter: DeadLetterFn, *, poison: str | None = None) -> BatchResult:
    """Apply ``records`` (one partition's records in offset order, partitions interleaved as consumed)
    and store the new offsets and watermarks, in one transaction. See the module docstring."""
    try:
        with dialect.transaction(conn):
            state = store.load(conn)
            plan = plan_batch(records, state, spec, poison)
            apply_plan(conn, dialect, tables, plan, spec)
            for rec, reason in plan.dead:
                dead_letter(rec, reason)
            store.save(conn, plan.offsets, plan.watermarks)
    except BaseException:
        tables.reset()
        raise
    state.merge(plan.offsets, plan.watermarks)
    return BatchResult(plan, state)
