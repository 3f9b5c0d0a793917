"""One bad record, or a failure that hits every record? Dead-letter the first, stop on the second.

A record the channel database refuses (``SkippableError``) is isolated and dead-lettered. When the
cause is not the record but the channel (a table whose definition the conflict check cannot see,
such as an extra NOT NULL column, a CHECK constraint or a trigger), every record would be
dead-lettered one by one. ``FailureBreaker`` tells the two apart before the first letter is sent:

- **probe**: when a record is refused, up to ``probes`` records after it in the same batch, of
  the same table and kind (upsert or delete), spread over the rest of it, are applied in a
  transaction that is always rolled back (``dry_run``). If each is refused with the same error
  (same ``signature``: driver error type, SQLSTATE, constraint/column/table, not the values), the
  failure is systematic;
- **streak**: without later records to probe (one record per batch under light traffic),
  ``threshold`` refusals in a row with the same signature, and no record applied in between,
  count as systematic too (so at most ``threshold - 1`` letters are sent).

Systematic raises ``SystematicFailure`` (a ``FatalError``): the sink stops with the error, the
table and the way out, and the batch is not committed (its records are applied once fixed).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from cdx.connectors.sink.apply import apply_plan
from cdx.connectors.sink.plan import plan_batch
from cdx.connectors.sink.records import Record
from cdx.connectors.sink.spec import SinkSpec
from cdx.connectors.sink.state import StateStore
from cdx.connectors.sink.tables import TableManager
from cdx.dialects import Connection, Dialect
from cdx.errors import FatalError


class SystematicFailure(FatalError):
    """Every record tried is refused by the channel database with the same error."""


def signature(exc: BaseException) -> str:
    """What an error is about without its values: type, SQLSTATE and the constraint/column/table named."""
    parts = [type(exc).__name__, str(getattr(exc, "sqlstate", "") or "")]
    diag = getattr(exc, "diag", None)
    if diag is not None:
        parts += [str(getattr(diag, k, "") or "") for k in ("constraint_name", "column_name", "table_name")]
    if not parts[1]:  # no SQLSTATE (SQLite, pyodbc): the message with quoted values and numbers masked
        parts.append(re.sub(r"'[^']*'|\"[^\"]*\"|\([^)]*\)|\d+", "?", str(exc))[:200])
    return "|".join(parts)


class _Rollback(Exception):
    """Raised to roll a dry run back."""


@contextmanager
def rolled_back(dialect: Dialect, conn: Connection) -> Iterator[None]:
    """A transaction that is always rolled back (a dry run); errors of its body propagate."""
    try:
        with dialect.transaction(conn):
            yield
            raise _Rollback
    except _Rollback:
        pass


def dry_run(conn: Connection, dialect: Dialect, store: StateStore, tables: TableManager, spec: SinkSpec,
            record: Record) -> BaseException | None:
    """Apply ``record`` in a transaction that is rolled back; the error it met, or None."""
    try:
        with rolled_back(dialect, conn):
            apply_plan(conn, dialect, tables, plan_batch([record], store.load(conn), spec), spec)
    except Exception as exc:
        return exc
    finally:
        tables.reset()
    return None


def _spread(records: Sequence[Record], n: int) -> list[Record]:
    """Up to ``n`` records spread over ``records`` (first, last, and between)."""
    if len(records) <= n:
        return list(records)
    step = (len(records) - 1) / max(n - 1, 1)
    return [records[round(i * step)] for i in range(n)]


def _alike(other: Record, record: Record) -> bool:
    """Same table and same kind of change (upsert or delete): a delete that succeeds says nothing
    about inserts that all fail."""
    if other.change is None or record.change is None or other.shape is None or record.shape is None:
        return False
    return other.shape.target == record.shape.target and other.change.is_delete == record.change.is_delete


class FailureBreaker:
    """See the module docstring. ``probe(record)`` is ``dry_run`` bound to the sink's connection."""

    def __init__(self, name: str, probe: Callable[[Record], BaseException | None], *, threshold: int = 10,
                 probes: int = 3) -> None:
        self.name = name
        self.probe = probe
        self.threshold = threshold
        self.probes = probes
        self._signature: str | None = None
        self._streak = 0

    def succeeded(self) -> None:
        """A batch (or part) was applied: the refusals so far were not systematic."""
        self._signature, self._streak = None, 0

    def refused(self, error: BaseException, record: Record, later: Sequence[Record]) -> None:
        """``record`` was refused with ``error``; raise ``SystematicFailure`` if every record would be."""
        sig = signature(error)
        self._streak = self._streak + 1 if sig == self._signature else 1
        self._signature = sig
        if self._streak >= self.threshold:
            raise self._stop(error, record, f"{self._streak} records in a row")
        candidates = _spread([r for r in later if _alike(r, record)], self.probes)
        if not candidates:
            return
        for other in candidates:
            found = self.probe(other)
            if found is None or signature(found) != sig:
                self.succeeded()
                return
        raise self._stop(error, record, f"this record and {len(candidates)} later ones tried")

    def _stop(self, error: BaseException, record: Record, how_many: str) -> SystematicFailure:
        table = record.shape.target if record.shape is not None else "?"
        first = " ".join(str(error).split())[:300]
        return SystematicFailure(
            f"channel {self.name}: the database refuses every record of {table} with the same error"
            f" ({how_many}): {type(error).__name__}: {first}; the channel is stopped instead of dead-lettering"
            " each record: fix the table or the cause (see docs/sinks.md), then start the sink again; the"
            " records are applied then")
