"""Logical column types and the column description every dialect speaks.

``LogicalType`` is the kernel's database-independent type vocabulary; each dialect
maps it to DDL (``Dialect.column_ddl``) and back from its catalog
(``Dialect.introspect_columns``). Python values of each type, as read by
``Dialect.decode`` and accepted by the bulk writers:

=========  ======================  =========  =====================================
type       Python                  type       Python
=========  ======================  =========  =====================================
int32      int                     bool       bool
int64      int                     bytes      bytes
float64    float                   date       datetime.date
decimal    decimal.Decimal         timestamp  naive datetime.datetime (UTC by convention)
string     str                     uuid       uuid.UUID
=========  ======================  =========  =====================================
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cdx.types import LogicalType


@dataclass(frozen=True)
class ColumnInfo:
    """One column.

    ``precision``/``scale`` apply to ``decimal`` (``None``: the dialect's default);
    ``length`` to ``string``/``bytes`` (``None``: unbounded). ``key_position`` is the
    1-based position of the column in the primary key (0 when not part of it), so
    ``primary_key`` is ``key_position > 0`` for introspected columns.
    """

    name: str
    logical_type: LogicalType
    nullable: bool = True
    primary_key: bool = False
    precision: int | None = None
    scale: int | None = None
    length: int | None = None
    key_position: int = 0
    default: str | None = None
    """A SQL literal the column defaults to in DDL (``Dialect.zero_default``); None: no DEFAULT."""


def key_columns(columns: Sequence[ColumnInfo]) -> list[str]:
    """Names of the primary-key columns in key order (``key_position``, then table order)."""
    keyed = [(c.key_position or 10_000 + i, c.name) for i, c in enumerate(columns) if c.primary_key]
    return [name for _, name in sorted(keyed)]
