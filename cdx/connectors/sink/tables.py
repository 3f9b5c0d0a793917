"""Channel tables from writer schemas: create on first use, add columns a newer schema brings.

Types come from the Avro schemas (``cdx.routed.columns_of``): primary key from the key schema
(NOT NULL), every other column nullable, except in extension schemas (``extensions.schemas``,
default ``ext``), whose columns are NOT NULL with the type's empty value as DEFAULT, as the CDX
extension rules require. A table that exists is never altered except to add a missing column
(nullable, existing rows read NULL; in an extension table NOT NULL DEFAULT, existing rows read
the default), and is checked first: a primary key or column type that conflicts with the records
stops the sink before anything is written (``cdx.connectors.sink.conflicts``). Columns the table has but a schema
lacks are left alone (upserts do not touch them). Identity is case-insensitive.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable

from cdx.codec import Column
from cdx.connectors.sink.conflicts import check_table
from cdx.connectors.sink.records import Shape
from cdx.dialects import ColumnInfo, Connection, Dialect, LogicalType

log = logging.getLogger("cdx.sink")


def column_info(column: Column, key_position: int = 0, dialect: Dialect | None = None) -> ColumnInfo:
    """A codec column as the dialects describe it; with ``dialect``, an extension column (NOT NULL
    with the type's empty value as DEFAULT, unless it is a key column)."""
    info = ColumnInfo(column.name, LogicalType(column.type.value), nullable=column.nullable,
                      primary_key=key_position > 0, precision=column.precision, scale=column.scale,
                      length=column.length, key_position=key_position)
    if dialect is None or key_position > 0:
        return info
    return dataclasses.replace(info, nullable=False, default=dialect.zero_default(info))


class TableManager:
    """Known columns of the tables one sink writes, per connection; DDL runs in the caller's transaction.

    Call ``reset()`` after a rolled-back transaction: the cache may then name tables or columns
    the rollback undid.
    """

    def __init__(self, dialect: Dialect, extension_schemas: Iterable[str] = ("ext",)) -> None:
        self.dialect = dialect
        self.extension_schemas = {s.casefold() for s in extension_schemas}
        self._known: dict[tuple[str, str], set[str]] = {}
        self._foreign: dict[tuple[str, str], bool] = {}
        self.created: list[str] = []
        self.added: list[str] = []
        self.keys_exist: set[tuple[str, str]] = set()
        """Tables (schema, table) a plain bulk load found keys in (``apply.upsert``: upserted from then on)."""

    def reset(self) -> None:
        self._known.clear()
        self._foreign.clear()

    def ensure(self, conn: Connection, shapes: Iterable[Shape]) -> None:
        """Make the table of ``shapes`` (one target) exist with every column they carry."""
        for shape in shapes:
            ident = (shape.schema.casefold(), shape.table.casefold())
            known = self._known.get(ident)
            if known is None:
                known = self._open(conn, shape)
                self._known[ident] = known
            for col in shape.columns:
                if col.name.casefold() not in known:
                    if self.dialect.add_column(conn, shape.schema, shape.table, column_info(col, 0, self._ext(shape))):
                        self.added.append(f"{shape.target}.{col.name}")
                        log.info("added column %s.%s (%s) from a newer writer schema", shape.target, col.name,
                                 col.type.value)
                    known.add(col.name.casefold())

    def _ext(self, shape: Shape) -> Dialect | None:
        """The dialect when ``shape`` is an extension table (its columns get defaults), else None."""
        return self.dialect if shape.schema.casefold() in self.extension_schemas else None

    def has_foreign_keys(self, conn: Connection, schema: str, table: str) -> bool:
        """Whether a foreign key references the table or starts from it (cached per connection):
        only such tables need their deletes after the upserts (see ``apply``)."""
        ident = (schema.casefold(), table.casefold())
        found = self._foreign.get(ident)
        if found is None:
            found = self._foreign[ident] = self.dialect.has_foreign_keys(conn, schema, table)
        return found

    def _open(self, conn: Connection, shape: Shape) -> set[str]:
        d = self.dialect
        keys = {name: i + 1 for i, name in enumerate(shape.key_names)}
        if d.table_exists(conn, shape.schema, shape.table):
            cols = d.introspect_columns(conn, shape.schema, shape.table, require_primary_key=False)
            check_table(d, shape.target, cols, [column_info(c, keys.get(c.name, 0)) for c in shape.columns],
                        shape.key_names)
            return {c.name.casefold() for c in cols}
        d.ensure_schema(conn, shape.schema)
        d.create_table(conn, shape.schema, shape.table,
                       [column_info(c, keys.get(c.name, 0), self._ext(shape)) for c in shape.columns],
                       list(shape.key_names))
        self.created.append(shape.target)
        log.info("created table %s (%d columns, key %s)", shape.target, len(shape.columns),
                 ", ".join(shape.key_names))
        return {c.casefold() for c in shape.names}
