"""What the session tables of every hop share (download sessions in the channel databases, upload sessions
at HQ): column constructors, the clock they record in (naive UTC), kernel-table naming and the insert.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from cdx.dialects import ColumnInfo, Connection, Dialect, LogicalType
from cdx.dialects.base import KERNEL_SCHEMA
from cdx.errors import FatalError


def text_column(name: str, length: int | None = None, nullable: bool = True) -> ColumnInfo:
    return ColumnInfo(name, LogicalType.STRING, nullable=nullable, length=length)


def int_columns(*names: str) -> tuple[ColumnInfo, ...]:
    return tuple(ColumnInfo(n, LogicalType.INT64, nullable=True) for n in names)


def time_columns(*names: str) -> tuple[ColumnInfo, ...]:
    return tuple(ColumnInfo(n, LogicalType.TIMESTAMP, nullable=True) for n in names)


def utcnow() -> dt.datetime:
    """Now, as the session tables store it: UTC without a time zone."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def kernel_ref(dialect: Dialect, name: str) -> tuple[str | None, str]:
    """``(schema, table)`` such that ``dialect.qualified(schema, table) == dialect.kernel_table(name)``,
    so the generic table helpers (create, exists, introspect) work on a cdx-owned table."""
    want = dialect.kernel_table(name)
    for ref in ((KERNEL_SCHEMA, name), (None, name)):
        if dialect.qualified(*ref) == want:
            return ref
    raise FatalError(f"cannot name the kernel table {name} in {dialect.name}")


def insert_rows(conn: Connection, dialect: Dialect, table: str, names: Sequence[str],
                rows: Sequence[Sequence[Any]]) -> None:
    """Insert ``rows`` (values in ``names`` order, encoded here) into ``table`` (already qualified), in the
    caller's transaction. One row is a plain statement (``executemany`` costs a pipeline round)."""
    encoded = [[dialect.encode(v) for v in row] for row in rows]
    if not encoded:
        return
    sql = f"INSERT INTO {table} ({dialect.columns_sql(names)}) VALUES ({', '.join([dialect.placeholder] * len(names))})"
    if len(encoded) == 1:
        conn.cursor().execute(sql, encoded[0])
    else:
        conn.cursor().executemany(sql, encoded)
