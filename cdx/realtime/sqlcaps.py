"""What the Real-time Service needs from a database beyond the kernel ``Dialect``, per dialect.

One small capability object per dialect (no ``if dialect ==`` in the operations):

- ``connect``: a connection any worker thread may use (SQLite: ``check_same_thread=False``);
- ``insert_if_absent``: an INSERT that does nothing when the key exists (and, in PostgreSQL,
  waits for a concurrent inserter of the same key to finish first), so the caller learns from
  the row count whether it inserted;
- ``locked``: the FROM item and trailing clause that take a row lock on the rows read
  (PostgreSQL ``FOR UPDATE``, SQL Server ``WITH (UPDLOCK, ROWLOCK)``; SQLite needs none: its
  writers are serialised by ``BEGIN IMMEDIATE``);
- ``top``: how a query asks for the first ``n`` rows;
- ``returning``: the clause that makes an ``UPDATE`` answer with the changed row (PostgreSQL and
  SQLite ``RETURNING``; SQL Server: none, the row is read back with a second statement);
- ``finish``: run the statements whose results nobody reads (ledger rows, the stored response)
  before the commit; PostgreSQL runs them as one statement (data-modifying ``WITH``), one round
  trip (measured: less client CPU than a psycopg pipeline, which would also carry the ``COMMIT``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from cdx.dialects import Connection, Dialect, get_dialect
from cdx.dialects.sqlite import sqlite_path


@dataclass(frozen=True)
class SqlCaps:
    """Statement shapes of one dialect; the base serves PostgreSQL."""

    dialect: Dialect
    one_statement: ClassVar[bool] = True
    """``finish`` runs the deferred statements as one (PostgreSQL); else one by one."""

    def connect(self, dsn: str) -> Connection:
        return self.dialect.connect(dsn)

    def insert_if_absent(self, table_sql: str, columns: Sequence[str], key: Sequence[str]) -> str:
        d = self.dialect
        values = ", ".join([d.placeholder] * len(columns))
        return (f"INSERT INTO {table_sql} ({d.columns_sql(columns)}) VALUES ({values})"
                f" ON CONFLICT ({d.columns_sql(key)}) DO NOTHING")

    def locked(self, table_sql: str) -> tuple[str, str]:
        return table_sql, " FOR UPDATE"

    def top(self, n: int) -> tuple[str, str]:
        return "", f" LIMIT {int(n)}"

    def returning(self, columns: Sequence[str]) -> str | None:
        return f" RETURNING {self.dialect.columns_sql(columns)}"

    def finish(self, conn: Connection, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
        """Run ``statements`` (independent INSERT/UPDATE/DELETE without their own ``WITH``) in the open
        transaction; its owner commits."""
        if len(statements) < 2 or not self.one_statement:
            cur = conn.cursor()
            for sql, params in statements:
                cur.execute(sql, params)
            return
        ctes = ", ".join(f"d{i} AS ({sql})" for i, (sql, _) in enumerate(statements[:-1]))
        conn.cursor().execute(f"WITH {ctes} {statements[-1][0]}", [v for _, params in statements for v in params])


class SQLiteCaps(SqlCaps):
    one_statement = False
    def connect(self, dsn: str) -> Connection:
        conn = sqlite3.connect(sqlite_path(dsn), timeout=30, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA recursive_triggers = ON")  # as the kernel dialect: change tracking relies on it
        return conn

    def locked(self, table_sql: str) -> tuple[str, str]:
        return table_sql, ""

    def returning(self, columns: Sequence[str]) -> str | None:
        return super().returning(columns) if sqlite3.sqlite_version_info >= (3, 35) else None


class SQLServerCaps(SqlCaps):
    one_statement = False
    def insert_if_absent(self, table_sql: str, columns: Sequence[str], key: Sequence[str]) -> str:
        d = self.dialect
        params = ", ".join(f"{d.placeholder} AS {d.quote_ident(c)}" for c in columns)
        match = " AND ".join(f"t.{d.quote_ident(k)} = s.{d.quote_ident(k)}" for k in key)
        return (f"INSERT INTO {table_sql} ({d.columns_sql(columns)}) SELECT {d.columns_sql(columns, 's')}"
                f" FROM (SELECT {params}) AS s WHERE NOT EXISTS"
                f" (SELECT 1 FROM {table_sql} AS t WITH (UPDLOCK, HOLDLOCK) WHERE {match})")

    def locked(self, table_sql: str) -> tuple[str, str]:
        return f"{table_sql} WITH (UPDLOCK, ROWLOCK)", ""

    def top(self, n: int) -> tuple[str, str]:
        return f"TOP ({int(n)}) ", ""

    def returning(self, columns: Sequence[str]) -> str | None:
        return None  # OUTPUT needs INTO on tables with triggers; read the row back instead


def caps_for(dialect_name: str) -> SqlCaps:
    dialect = get_dialect(dialect_name)
    kind = {"sqlite": SQLiteCaps, "sqlserver": SQLServerCaps}.get(dialect.name, SqlCaps)
    return kind(dialect)
