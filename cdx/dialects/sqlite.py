"""SQLite (standard-library ``sqlite3``).

- DSN: ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db`` (SQLAlchemy's
  convention), a plain path, or ``:memory:``. Files are opened in WAL mode so readers
  (capture, snapshots) never block the writer.
- No schemas: ``schema.table`` is the table ``<schema>_<table>`` (``ax_INVENTTABLE``).
- Storage: decimals are kept exact as canonical TEXT under the declared type
  ``DECIMAL_TEXT(p,s)`` (TEXT affinity); dates and timestamps as ISO-8601 TEXT
  (``YYYY-MM-DD HH:MM:SS.ffffff``, naive UTC); uuids as TEXT; bools as 0/1.
  ``encode``/``decode`` convert.
- Connections turn ``recursive_triggers`` on, so that ``INSERT OR REPLACE`` fires delete
  triggers (change tracking relies on them).
"""

from __future__ import annotations

import datetime as dt
import json
import operator
import re
import sqlite3
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

from cdx.dialects.base import (
    Connection,
    Dialect,
    bulk_rows,
    missing_table,
    no_primary_key,
    unsupported_type,
)
from cdx.dialects.reach import connect_failure
from cdx.dialects.types import ColumnInfo, LogicalType
from cdx.errors import CdxError, RetriableError, SkippableError
from cdx.topology.dsn import sqlite_path

_DDL = {
    LogicalType.INT32: "INT", LogicalType.INT64: "BIGINT", LogicalType.FLOAT64: "DOUBLE",
    LogicalType.BOOL: "BOOLEAN", LogicalType.DATE: "DATE", LogicalType.TIMESTAMP: "TIMESTAMP",
    LogicalType.UUID: "UUID",
}
_DECLARED = {
    **{t: LogicalType.INT32 for t in ("INT", "SMALLINT", "TINYINT", "MEDIUMINT", "INT2", "INT4")},
    **{t: LogicalType.INT64 for t in ("INTEGER", "BIGINT", "INT8", "UNSIGNED BIG INT")},
    **{t: LogicalType.FLOAT64 for t in ("DOUBLE", "DOUBLE PRECISION", "REAL", "FLOAT")},
    **{t: LogicalType.DECIMAL for t in ("DECIMAL_TEXT", "DECIMAL", "NUMERIC")},
    **{t: LogicalType.STRING for t in ("VARCHAR", "NVARCHAR", "CHAR", "NCHAR", "CHARACTER", "TEXT", "CLOB",
                                        "VARYING CHARACTER", "NATIVE CHARACTER")},
    **{t: LogicalType.BOOL for t in ("BOOLEAN", "BOOL")},
    **{t: LogicalType.BYTES for t in ("BLOB", "")},
    "DATE": LogicalType.DATE,
    **{t: LogicalType.TIMESTAMP for t in ("TIMESTAMP", "DATETIME")},
    **{t: LogicalType.UUID for t in ("UUID", "GUID", "UNIQUEIDENTIFIER")},
}
_TYPE_RE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_ ]*?)?\s*(?:\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\))?\s*$")
_RETRIABLE_CODES = {5, 6, 15}  # SQLITE_BUSY, SQLITE_LOCKED, SQLITE_PROTOCOL
_SKIPPABLE_CODES = {18, 19, 20, 25}  # SQLITE_TOOBIG, SQLITE_CONSTRAINT, SQLITE_MISMATCH, SQLITE_RANGE
_NATIVE = frozenset({str, int, float, bytes, type(None)})
"""Types ``encode`` returns unchanged (``bool`` is not among them: it becomes an int)."""
_INT64 = (-(1 << 63), (1 << 63) - 1)
JSON_ROWS = 200
"""Rows from which a bulk upsert is one ``INSERT ... SELECT`` over JSON (see ``SQLiteDialect._insert``)."""


def _timestamp_text(value: dt.datetime) -> str:
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value.isoformat(sep=" ", timespec="microseconds")


_ENCODERS: dict[type, Any] = {
    Decimal: lambda v: format(v, "f"), dt.datetime: _timestamp_text, dt.date: dt.date.isoformat, uuid.UUID: str,
    bool: int, bytearray: bytes, memoryview: bytes}
"""How ``encode`` converts each type (in this order: a datetime is a date); a column of one exact type is
encoded with its converter alone."""
_ENCODED: dict[type, type] = {Decimal: str, dt.datetime: str, dt.date: str, uuid.UUID: str, bool: int, bytearray: bytes,
                              memoryview: bytes}
"""The type ``_ENCODERS`` make of each."""
_ISO = operator.methodcaller("isoformat", " ", "microseconds")
_FIXED = operator.methodcaller("__format__", "f")
_TZ = operator.attrgetter("tzinfo")


def _encode_column(kind: type, column: Sequence[Any], nulls: bool) -> list[Any]:
    """A column of ``kind`` values (and None where ``nulls``) as ``_ENCODERS`` encodes them: without nulls,
    the common kinds through C-level calls (naive timestamps, decimals; a bootstrap encodes millions)."""
    if not nulls:
        if kind is dt.datetime and not any(map(_TZ, column)):
            return list(map(_ISO, column))
        if kind is Decimal:
            return list(map(_FIXED, column))
    convert = _ENCODERS[kind]
    return [None if v is None else convert(v) for v in column]


class SQLiteDialect(Dialect):
    name = "sqlite"
    placeholder = "?"
    max_identifier_length = 128
    zero_defaults = {LogicalType.TIMESTAMP: "'1900-01-01 00:00:00.000000'", LogicalType.DECIMAL: "'0'"}

    def connect(self, dsn: str | Path) -> sqlite3.Connection:
        path = sqlite_path(dsn)
        try:
            if path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            # a channel sink's steps run on any worker of its host, one at a time (``cdx.connectors.sink.pool``)
            conn = sqlite3.connect(path, timeout=30, check_same_thread=False)
        except (sqlite3.Error, OSError) as exc:
            raise connect_failure(self.name, str(dsn), exc) from exc
        try:
            conn.execute("PRAGMA recursive_triggers = ON")  # REPLACE's implicit deletes fire delete triggers
            if path != ":memory:":
                conn.execute("PRAGMA journal_mode=WAL")
        except sqlite3.DatabaseError as exc:  # not a database file, or a read-only one
            conn.close()
            raise connect_failure(self.name, str(dsn), exc) from exc
        return conn

    @contextmanager
    def transaction(self, conn: Connection) -> Iterator[Connection]:
        if not conn.in_transaction:
            conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.commit()
        except BaseException:
            conn.rollback()
            raise

    def _quote(self, name: str) -> str:
        return f'"{name}"'

    def physical_table(self, schema: str | None, table: str) -> tuple[str | None, str]:
        schema, table = super().physical_table(schema, table)
        return None, f"{schema}_{table}" if schema else table

    def kernel_table(self, name: str) -> str:
        return self.quote_ident(name)

    # -- types -------------------------------------------------------------------------
    def type_ddl(self, column: ColumnInfo) -> str:
        t, n = column.logical_type, column.length
        if t is LogicalType.DECIMAL:
            if column.precision is None:
                return "DECIMAL_TEXT"
            return f"DECIMAL_TEXT({column.precision},{column.scale or 0})"
        if t is LogicalType.STRING:
            return f"VARCHAR({n})" if n else "TEXT"
        if t is LogicalType.BYTES:
            return f"BLOB({n})" if n else "BLOB"
        return _DDL[t]

    def table_exists(self, conn: Connection, schema: str | None, table: str) -> bool:
        _, name = self.physical_table(schema, table)
        row = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone()
        return row is not None

    def introspect_columns(self, conn: Connection, schema: str | None, table: str, *,
                           require_primary_key: bool = True) -> list[ColumnInfo]:
        if not self.table_exists(conn, schema, table):
            raise missing_table(schema, table, self.name)
        _, name = self.physical_table(schema, table)
        rows = conn.execute("SELECT name, type, \"notnull\", pk FROM pragma_table_info(?) ORDER BY cid",
                            (name,)).fetchall()
        columns = [self._column(schema, table, *row) for row in rows]
        if require_primary_key and not any(c.primary_key for c in columns):
            raise no_primary_key(schema, table)
        return columns

    def _column(self, schema: str | None, table: str, name: str, declared: str, notnull: int,
                pk: int) -> ColumnInfo:
        m = _TYPE_RE.match(declared or "")
        if not m:
            raise unsupported_type(schema, table, name, declared)
        base = " ".join((m.group(1) or "").upper().split())
        a, b = (int(x) if x else None for x in m.group(2, 3))
        logical = _DECLARED.get(base) or _affinity_type(base)
        if logical is None:
            raise unsupported_type(schema, table, name, declared)
        info: dict[str, Any] = {"precision": a, "scale": b if b is not None else (0 if a is not None else None)} \
            if logical is LogicalType.DECIMAL else \
            {"length": a} if logical in (LogicalType.STRING, LogicalType.BYTES) else {}
        return ColumnInfo(name, logical, nullable=not notnull and not pk, primary_key=pk > 0,
                          key_position=pk, **info)

    def encode(self, value: Any) -> Any:
        for kind, convert in _ENCODERS.items():  # datetime before date
            if isinstance(value, kind):
                return convert(value)
        return value

    def decode(self, column: ColumnInfo, value: Any) -> Any:
        if value is None:
            return None
        t = column.logical_type
        if t in (LogicalType.INT32, LogicalType.INT64):
            return int(value)
        if t is LogicalType.FLOAT64:
            return float(value)
        if t is LogicalType.DECIMAL:
            return Decimal(repr(value) if isinstance(value, float) else str(value))
        if t is LogicalType.BOOL:
            return bool(value)
        if t is LogicalType.DATE and isinstance(value, str):
            return dt.date.fromisoformat(value[:10])
        if t is LogicalType.TIMESTAMP and isinstance(value, str):
            return dt.datetime.fromisoformat(value)
        if t is LogicalType.UUID:
            return uuid.UUID(bytes=value) if isinstance(value, bytes) else uuid.UUID(str(value))
        if t is LogicalType.STRING and not isinstance(value, str):
            return str(value)
        return value

    def _encode_rows(self, rows: Sequence[Sequence[Any]]) -> Sequence[Sequence[Any]]:
        """``rows`` with every value ``encode``d, column by column: a column holding only values sqlite3
        binds as they are (str, int, float, bytes, None) is left alone (bulk loads are mostly such)."""
        return self._encode_columns(rows)[0]

    def _encode_columns(self, rows: Sequence[Sequence[Any]]) -> tuple[Sequence[Sequence[Any]], bool]:
        """``_encode_rows``, and whether JSON carries every encoded value exactly (str, None, 64-bit int)."""
        if not rows:
            return rows, True
        columns: list[Sequence[Any]] = list(zip(*rows, strict=True))
        encoded, exact = False, True
        for i, column in enumerate(columns):
            kinds = set(map(type, column))
            nulls = type(None) in kinds
            kinds.discard(type(None))
            if not kinds <= _NATIVE:
                kind = next(iter(kinds)) if len(kinds) == 1 else None
                if kind in _ENCODERS:
                    columns[i] = _encode_column(kind, column, nulls)
                    kinds = {_ENCODED[kind]}
                else:
                    columns[i] = tuple(map(self.encode, column))
                    kinds = {type(v) for v in columns[i] if v is not None}
                encoded = True
            if kinds - {str, int}:
                exact = False
            elif int in kinds:
                ints = columns[i] if not nulls and len(kinds) == 1 else [v for v in columns[i] if type(v) is int]
                exact = exact and _INT64[0] <= min(ints) and max(ints) <= _INT64[1]
        return (list(zip(*columns, strict=True)) if encoded else rows), exact

    # -- DDL ---------------------------------------------------------------------------
    def ensure_schema(self, conn: Connection, schema: str | None) -> None:
        """SQLite has no schemas: nothing to do."""

    # -- bulk: executemany of INSERT ... ON CONFLICT (SQLite is in-process: no round trips)
    def upsert_rows(self, conn: Connection, schema: str | None, table: str, columns: Sequence[str],
                    key_columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
        return self._insert(conn, schema, table, columns, key_columns, rows, update=True)

    def insert_ignore_existing(self, conn: Connection, schema: str | None, table: str, columns: Sequence[str],
                               key_columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
        return self._insert(conn, schema, table, columns, key_columns, rows, update=False)

    def _insert(self, conn: Connection, schema: str | None, table: str, columns: Sequence[str],
                key_columns: Sequence[str], rows: Iterable[Sequence[Any]], update: bool) -> int:
        """``JSON_ROWS`` rows or more: ONE ``INSERT ... SELECT ... FROM json_each(?)`` over the rows as one JSON
        text (same rows, order and conflict handling as row by row), which SQLite runs in a single call without
        Python's GIL, so another thread (a sink's feed decoding the next batch) runs meanwhile; ``executemany``
        takes the GIL back for every row, and waits for it behind a busy thread. Values JSON does not carry
        exactly (bytes, floats, ints beyond 64 bits, strings with NUL) and small batches: ``executemany``."""
        data, exact = self._encode_columns(bulk_rows(schema, table, columns, key_columns, rows))
        if not data:
            return 0
        text = json.dumps(data, ensure_ascii=False, check_circular=False) if exact and len(data) >= JSON_ROWS \
            else None
        if text is None or "\\u0000" in text:  # JSON's NUL would end the string in SQLite
            sql = self._insert_sql(schema, table, columns, key_columns, f"VALUES ({', '.join('?' * len(columns))})",
                                   update=update)
            return int(conn.executemany(sql, data).rowcount)
        select = f"SELECT {', '.join(f'value->>{i}' for i in range(len(columns)))} FROM json_each(?) WHERE true"
        return int(conn.execute(self._insert_sql(schema, table, columns, key_columns, select, update=update),
                                (text,)).rowcount)

    def _insert_sql(self, schema: str | None, table: str, columns: Sequence[str], key_columns: Sequence[str],
                    source: str, *, update: bool) -> str:
        action = self._upsert_action(columns, key_columns) if update else "DO NOTHING"
        return (f"INSERT INTO {self.qualified(schema, table)} ({self.columns_sql(columns)})"
                f" {source} ON CONFLICT ({self.columns_sql(key_columns)}) {action}")

    def delete_rows(self, conn: Connection, schema: str | None, table: str, key_columns: Sequence[str],
                    keys: Iterable[Sequence[Any]]) -> int:
        data = self._encode_rows(bulk_rows(schema, table, key_columns, key_columns, keys))
        if not data:
            return 0
        cond = " AND ".join(f"{self.quote_ident(k)} = ?" for k in key_columns)
        return int(conn.executemany(f"DELETE FROM {self.qualified(schema, table)} WHERE {cond}", data).rowcount)

    # -- errors ------------------------------------------------------------------------
    def _classify(self, exc: BaseException) -> type[CdxError] | None:
        if isinstance(exc, OverflowError):
            return SkippableError
        if not isinstance(exc, sqlite3.Error):
            return None
        code = getattr(exc, "sqlite_errorcode", None)
        primary = code & 0xFF if isinstance(code, int) else None
        if primary in _RETRIABLE_CODES or "database is locked" in str(exc):
            return RetriableError
        if primary in _SKIPPABLE_CODES or isinstance(exc, sqlite3.IntegrityError | sqlite3.DataError):
            return SkippableError
        if "binding parameter" in str(exc):
            return SkippableError
        return None


def _affinity_type(base: str) -> LogicalType | None:
    """SQLite's own affinity rules, for declared types cdx does not know by name."""
    if "INT" in base:
        return LogicalType.INT64
    if any(s in base for s in ("CHAR", "CLOB", "TEXT")):
        return LogicalType.STRING
    if "BLOB" in base:
        return LogicalType.BYTES
    if any(s in base for s in ("REAL", "FLOA", "DOUB")):
        return LogicalType.FLOAT64
    return None
