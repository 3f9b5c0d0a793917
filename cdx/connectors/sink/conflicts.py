"""Does an existing channel table fit what the topology's records need? (checked before any write)

A channel table that already exists (created by hand, by an older tool, or by a different
topology) is used as it is only when

- its primary key is the records' key (same columns, any order, case-insensitive): upserts and
  deletes match rows by it;
- every column the records carry that the table has holds their values: the same logical type,
  or a wider one (``int32`` in ``int64`` or ``decimal``; ``int64`` in ``decimal``; ``uuid`` in a
  string column). Lengths and precisions are not compared: a newer HQ schema may widen them, and a
  single value that does not fit is that record's problem (dead-lettered), not the table's.

Columns the table lacks are added by ``TableManager`` (nullable); columns it has beyond the
records' are left alone. A conflict raises ``TableConflict`` naming the table, each column, what
was found and what is expected, and how to fix it, before anything is written.
"""

from __future__ import annotations

from collections.abc import Sequence

from cdx.dialects import ColumnInfo, Dialect, LogicalType
from cdx.errors import FatalError

T = LogicalType
HOLDS: dict[LogicalType, frozenset[LogicalType]] = {
    T.INT32: frozenset((T.INT32, T.INT64, T.DECIMAL)),
    T.INT64: frozenset((T.INT64, T.DECIMAL)),
    T.UUID: frozenset((T.UUID, T.STRING)),
}
"""Expected type -> column types that hold every value of it (besides the type itself)."""


class TableConflict(FatalError):
    """An existing channel table conflicts with the records' schema: the sink and ``channel init`` stop."""


def conflicts(dialect: Dialect, found: Sequence[ColumnInfo], expected: Sequence[ColumnInfo],
              key: Sequence[str]) -> list[str]:
    """What is wrong with a table of columns ``found`` for records of ``expected`` keyed by ``key``."""
    problems = []
    have = {c.name.casefold(): c for c in found}
    for want in expected:
        col = have.get(want.name.casefold())
        if col is None or col.logical_type is want.logical_type:
            continue
        if col.logical_type in HOLDS.get(want.logical_type, frozenset()):
            continue
        problems.append(f"column {want.name} is {dialect.type_ddl(col)}, expected {dialect.type_ddl(want)}"
                        f" ({want.logical_type.value})")
    table_key = primary_key(found)
    if {k.casefold() for k in table_key} != {k.casefold() for k in key}:
        shown = f"({', '.join(table_key)})" if table_key else "missing"
        problems.append(f"primary key is {shown}, expected ({', '.join(key)})")
    return problems


def primary_key(columns: Sequence[ColumnInfo]) -> list[str]:
    """The primary key columns of a table, in key order."""
    return [c.name for c in sorted((c for c in columns if c.primary_key), key=lambda c: c.key_position)]


def check_table(dialect: Dialect, target: str, found: Sequence[ColumnInfo], expected: Sequence[ColumnInfo],
                key: Sequence[str]) -> None:
    """Raise ``TableConflict`` when ``conflicts`` finds anything."""
    problems = conflicts(dialect, found, expected, key)
    if problems:
        raise TableConflict(
            f"channel table {target} conflicts with the topology: {'; '.join(problems)}. Nothing was written;"
            f" alter the table to match, or drop (or rename) it so that cdx creates it (cdx channel init)")
