"""Microsoft SQL Server (pyodbc, Microsoft ODBC Driver 17 or 18).

- DSN: an ODBC connection string (``DRIVER={...};SERVER=...;...``) or a URL
  ``mssql+pyodbc://user:password@host:port/database?driver=ODBC+Driver+18+for+SQL+Server&Encrypt=no``
  (``mssql://`` and ``sqlserver://`` too; ``?odbc_connect=<url-encoded string>`` is used as is).
- Bulk apply: pyodbc ``fast_executemany`` into a ``#temp`` staging table (created by a
  parameterless ``SELECT TOP (0) ... INTO`` so it lives in the session, with the target's
  column types), then one ``MERGE ... WITH (HOLDLOCK)`` / ``DELETE ... JOIN`` / ``INSERT
  ... WHERE NOT EXISTS``.
- pyodbc is imported lazily: the module loads without the ODBC driver manager installed.
"""

from __future__ import annotations

import itertools
import re
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from cdx.dialects.base import (
    Connection,
    Dialect,
    bulk_rows,
    chunks,
    missing_table,
    no_primary_key,
    unsupported_type,
)
from cdx.dialects.reach import connect_failure
from cdx.dialects.types import ColumnInfo, LogicalType
from cdx.errors import CdxError, RetriableError, SkippableError

DEFAULT_DRIVER = "ODBC Driver 18 for SQL Server"
_DDL = {
    LogicalType.INT32: "int", LogicalType.INT64: "bigint", LogicalType.FLOAT64: "float",
    LogicalType.BOOL: "bit", LogicalType.DATE: "date", LogicalType.TIMESTAMP: "datetime2(6)",
    LogicalType.UUID: "uniqueidentifier",
}
_CATALOG = {
    **{t: LogicalType.INT32 for t in ("tinyint", "smallint", "int")},
    "bigint": LogicalType.INT64,
    **{t: LogicalType.FLOAT64 for t in ("real", "float")},
    **{t: LogicalType.DECIMAL for t in ("decimal", "numeric", "money", "smallmoney")},
    **{t: LogicalType.STRING for t in ("nvarchar", "nchar", "varchar", "char", "ntext", "text")},
    "bit": LogicalType.BOOL,
    **{t: LogicalType.BYTES for t in ("varbinary", "binary", "image", "timestamp")},
    "date": LogicalType.DATE,
    **{t: LogicalType.TIMESTAMP for t in ("datetime", "datetime2", "smalldatetime")},
    "uniqueidentifier": LogicalType.UUID,
}
_MONEY = {"money": (19, 4), "smallmoney": (10, 4)}
_RETRIABLE_NATIVE = {1205, 1222, 3960, 233, 64, 121, 10053, 10054, 10060, 10928, 10929, 40197, 40501, 40613,
                     49918, 49919, 49920}
_SKIPPABLE_NATIVE = {2627, 2601, 547, 515, 8152, 2628, 8114, 245, 241, 242, 8115, 220, 244, 248, 8023}
_ORD, _RN = "[_cdx_ord]", "[_cdx_rn]"
_BATCH = 5_000
_staging_names = itertools.count(1)


def _odbc_value(value: str) -> str:
    if any(ch in value for ch in ";{}") or value != value.strip():
        return "{" + value.replace("}", "}}") + "}"
    return value


def odbc_connection_string(dsn: str) -> str:
    """An ODBC connection string for ``dsn`` (see module docstring)."""
    if "://" not in dsn:
        return dsn
    parts = urlsplit(dsn)
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    if "odbc_connect" in params:
        return params["odbc_connect"]
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    host, _, port = unquote(hostport).partition(":")
    out = {"DRIVER": "{" + params.pop("driver", DEFAULT_DRIVER) + "}",
           "SERVER": f"{host},{port}" if port else host}
    database = unquote(parts.path.lstrip("/"))
    if database:
        out["DATABASE"] = database
    if user:
        out["UID"], out["PWD"] = unquote(user), unquote(password)
    else:
        out.setdefault("Trusted_Connection", "yes")
    out.update(params)
    return ";".join(f"{k}={v if k == 'DRIVER' else _odbc_value(v)}" for k, v in out.items())


class SQLServerDialect(Dialect):
    name = "sqlserver"
    placeholder = "?"
    max_identifier_length = 128
    zero_defaults = {LogicalType.BYTES: "0x"}

    def connect(self, dsn: str) -> Connection:
        import pyodbc

        try:
            return pyodbc.connect(odbc_connection_string(dsn), autocommit=False)
        except pyodbc.Error as exc:
            raise connect_failure(self.name, dsn, exc) from exc

    @contextmanager
    def transaction(self, conn: Connection) -> Iterator[Connection]:
        was_autocommit = conn.autocommit
        conn.autocommit = False
        try:
            yield conn
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        finally:
            conn.autocommit = was_autocommit

    def _quote(self, name: str) -> str:
        return f"[{name}]"

    # -- types -------------------------------------------------------------------------
    def type_ddl(self, column: ColumnInfo) -> str:
        t, n = column.logical_type, column.length
        if t is LogicalType.DECIMAL:
            if column.precision is None:
                return "decimal(38,10)"
            return f"decimal({column.precision},{column.scale or 0})"
        if t is LogicalType.STRING:
            return f"nvarchar({n})" if n and n <= 4000 else "nvarchar(max)"
        if t is LogicalType.BYTES:
            return f"varbinary({n})" if n and n <= 8000 else "varbinary(max)"
        return _DDL[t]

    def _object_id(self, conn: Connection, schema: str | None, table: str) -> int | None:
        row = conn.execute("SELECT OBJECT_ID(?, 'U')", (self.qualified(schema or "dbo", table),)).fetchone()
        return int(row[0]) if row and row[0] is not None else None

    def table_exists(self, conn: Connection, schema: str | None, table: str) -> bool:
        return self._object_id(conn, schema, table) is not None

    def has_foreign_keys(self, conn: Connection, schema: str | None, table: str) -> bool:
        oid = self._object_id(conn, schema, table)
        return oid is not None and conn.execute(
            "SELECT COUNT(*) FROM sys.foreign_keys WHERE is_disabled = 0"
            " AND (parent_object_id = ? OR referenced_object_id = ?)", oid, oid).fetchone()[0] > 0

    def introspect_columns(self, conn: Connection, schema: str | None, table: str, *,
                           require_primary_key: bool = True) -> list[ColumnInfo]:
        oid = self._object_id(conn, schema, table)
        if oid is None:
            raise missing_table(schema, table, self.name)
        rows = conn.execute(
            "SELECT c.name, TYPE_NAME(c.system_type_id), c.max_length, c.precision, c.scale, c.is_nullable,"
            " COALESCE(ic.key_ordinal, 0)"
            " FROM sys.columns AS c"
            " LEFT JOIN sys.indexes AS i ON i.object_id = c.object_id AND i.is_primary_key = 1"
            " LEFT JOIN sys.index_columns AS ic ON ic.object_id = i.object_id AND ic.index_id = i.index_id"
            "  AND ic.column_id = c.column_id"
            " WHERE c.object_id = ? ORDER BY c.column_id", (oid,)).fetchall()
        columns = []
        for name, db_type, max_length, precision, scale, nullable, pos in rows:
            logical = _CATALOG.get(db_type)
            if logical is None:
                raise unsupported_type(schema, table, name, db_type)
            extra: dict[str, Any] = {}
            if logical is LogicalType.DECIMAL:
                precision, scale = _MONEY.get(db_type, (precision, scale))
                extra = {"precision": int(precision), "scale": int(scale)}
            elif logical in (LogicalType.STRING, LogicalType.BYTES) and db_type not in ("ntext", "text", "image"):
                length = None if max_length == -1 else int(max_length)
                extra = {"length": length // 2 if length and db_type in ("nvarchar", "nchar") else length}
            columns.append(ColumnInfo(name, logical, nullable=bool(nullable) and not pos, primary_key=pos > 0,
                                      key_position=int(pos), **extra))
        if require_primary_key and not any(c.primary_key for c in columns):
            raise no_primary_key(schema, table)
        return columns

    def decode(self, column: ColumnInfo, value: Any) -> Any:
        if value is None:
            return None
        if column.logical_type is LogicalType.UUID and not isinstance(value, uuid.UUID):
            return uuid.UUID(str(value))
        if column.logical_type is LogicalType.BOOL:
            return bool(value)
        return value

    # -- DDL ---------------------------------------------------------------------------
    def ensure_schema(self, conn: Connection, schema: str | None) -> None:
        if schema is not None:
            name = self.quote_ident(schema)
            conn.execute(f"IF SCHEMA_ID(N'{schema}') IS NULL EXEC(N'CREATE SCHEMA {name}')")

    def _create_table_sql(self, qualified: str, body: str) -> str:
        return f"IF OBJECT_ID(N'{qualified}', N'U') IS NULL CREATE TABLE {qualified} ({body})"

    def _state_text(self, length: int | None) -> str:
        return f"nvarchar({length})" if length else "nvarchar(max)"

    def write_state(self, conn: Connection, namespace: str, items: dict[str, str]) -> None:
        if not items:
            return
        n, k, v = (self.quote_ident(x) for x in ("namespace", "key", "value"))
        conn.cursor().executemany(
            f"MERGE {self.kernel_table('cdx_state')} WITH (HOLDLOCK) AS t"
            f" USING (SELECT ? AS {n}, ? AS {k}, ? AS {v}) AS s ON t.{n} = s.{n} AND t.{k} = s.{k}"
            f" WHEN MATCHED THEN UPDATE SET {v} = s.{v}"
            f" WHEN NOT MATCHED THEN INSERT ({n}, {k}, {v}) VALUES (s.{n}, s.{k}, s.{v});",
            [(namespace, key, value) for key, value in items.items()])

    # -- bulk: fast_executemany into #staging, then one statement --------------------------
    def _stage(self, conn: Connection, schema: str | None, table: str, columns: Sequence[str],
               rows: Sequence[Sequence[Any]]) -> str:
        stage = f"#cdx_stg_{next(_staging_names)}"
        cur = conn.cursor()
        # No parameters: executed directly, so the #table belongs to the session, not to an
        # sp_prepexec scope. The join stops SELECT INTO from copying an IDENTITY property.
        cur.execute(f"SELECT TOP (0) {self.columns_sql(columns, 't')}, CAST(0 AS bigint) AS {_ORD}"
                    f" INTO {stage} FROM {self.qualified(schema, table)} AS t"
                    " LEFT JOIN (SELECT 1 AS d) AS z ON 1 = 0")
        cur.fast_executemany = True
        insert = (f"INSERT INTO {stage} ({self.columns_sql(columns)}, {_ORD})"
                  f" VALUES ({', '.join('?' * (len(columns) + 1))})")
        numbered = [(*row, i) for i, row in enumerate(rows)]
        for batch in chunks(numbered, _BATCH):
            cur.executemany(insert, list(batch))
        return stage

    def _deduped(self, stage: str, columns: Sequence[str], key_columns: Sequence[str], order: str) -> str:
        cols = self.columns_sql(columns)
        return (f"(SELECT {cols} FROM (SELECT {cols}, ROW_NUMBER() OVER (PARTITION BY"
                f" {self.columns_sql(key_columns)} ORDER BY {_ORD} {order}) AS {_RN} FROM {stage}) AS d"
                f" WHERE d.{_RN} = 1)")

    def _run(self, conn: Connection, stage: str, sql: str) -> int:
        cur = conn.cursor()
        cur.execute(sql)
        count = int(cur.rowcount)
        cur.execute(f"DROP TABLE {stage}")
        return count

    def upsert_rows(self, conn: Connection, schema: str | None, table: str, columns: Sequence[str],
                    key_columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
        data = bulk_rows(schema, table, columns, key_columns, rows)
        if not data:
            return 0
        stage = self._stage(conn, schema, table, columns, data)
        others = [c for c in columns if c not in key_columns]
        matched = ("WHEN MATCHED THEN UPDATE SET "
                   + ", ".join(f"t.{self.quote_ident(c)} = s.{self.quote_ident(c)}" for c in others)) \
            if others else ""
        return self._run(conn, stage,
                         f"MERGE INTO {self.qualified(schema, table)} WITH (HOLDLOCK) AS t"
                         f" USING {self._deduped(stage, columns, key_columns, 'DESC')} AS s"
                         f" ON {self.match_sql(key_columns, 't', 's')} {matched}"
                         f" WHEN NOT MATCHED BY TARGET THEN INSERT ({self.columns_sql(columns)})"
                         f" VALUES ({self.columns_sql(columns, 's')});")

    def insert_ignore_existing(self, conn: Connection, schema: str | None, table: str, columns: Sequence[str],
                               key_columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
        data = bulk_rows(schema, table, columns, key_columns, rows)
        if not data:
            return 0
        stage = self._stage(conn, schema, table, columns, data)
        target = self.qualified(schema, table)
        return self._run(conn, stage,
                         f"INSERT INTO {target} ({self.columns_sql(columns)})"
                         f" SELECT {self.columns_sql(columns, 's')}"
                         f" FROM {self._deduped(stage, columns, key_columns, 'ASC')} AS s"
                         f" WHERE NOT EXISTS (SELECT 1 FROM {target} AS t WITH (UPDLOCK, HOLDLOCK)"
                         f" WHERE {self.match_sql(key_columns, 't', 's')})")

    def delete_rows(self, conn: Connection, schema: str | None, table: str, key_columns: Sequence[str],
                    keys: Iterable[Sequence[Any]]) -> int:
        data = bulk_rows(schema, table, key_columns, key_columns, keys)
        if not data:
            return 0
        stage = self._stage(conn, schema, table, key_columns, data)
        return self._run(conn, stage,
                         f"DELETE t FROM {self.qualified(schema, table)} AS t"
                         f" INNER JOIN {stage} AS s ON {self.match_sql(key_columns, 't', 's')}")

    # -- errors ------------------------------------------------------------------------
    # -- one writer per database: a session-owned application lock (sp_getapplock) -----
    session_locks = True

    def try_session_lock(self, conn: Connection, name: str) -> bool:
        """``sp_getapplock`` with ``@LockOwner = 'Session'`` and no wait: held until released or the
        connection ends (return code >= 0: granted; -1: held by another session)."""
        with self.transaction(conn):
            cur = conn.cursor()
            cur.execute("SET NOCOUNT ON; DECLARE @r int; EXEC @r = sp_getapplock @Resource = ?,"
                        " @LockMode = 'Exclusive', @LockOwner = 'Session', @LockTimeout = 0; SELECT @r",
                        (name[:255],))
            row = cur.fetchone()
        return row is not None and int(row[0]) >= 0

    def release_session_lock(self, conn: Connection, name: str) -> None:
        with self.transaction(conn):
            conn.cursor().execute("EXEC sp_releaseapplock @Resource = ?, @LockOwner = 'Session'", (name[:255],))

    def _classify(self, exc: BaseException) -> type[CdxError] | None:
        if not type(exc).__module__.startswith("pyodbc"):
            return None
        args = getattr(exc, "args", ())
        state = args[0] if args and isinstance(args[0], str) else ""
        natives = {int(n) for n in re.findall(r"\((-?\d+)\)", " ".join(str(a) for a in args))}
        if state.startswith("08") or state in ("40001", "HYT00", "HYT01") or natives & _RETRIABLE_NATIVE:
            return RetriableError
        if state[:2] in ("22", "23") or natives & _SKIPPABLE_NATIVE:
            return SkippableError
        return None
