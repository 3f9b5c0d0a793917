"""The ``Db`` handle the conformance suites use to reach one database of one dialect."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cdx.dialects import ColumnInfo, Dialect


@dataclass
class Db:
    dialect: Dialect
    dsn: str
    schema: str
    conns: list[Any] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.dialect.name

    def connect(self) -> Any:
        conn = self.dialect.connect(self.dsn)
        self.conns.append(conn)
        return conn

    def create(self, table: str, columns: Sequence[ColumnInfo], key: Sequence[str]) -> None:
        conn = self.connect()
        with self.dialect.transaction(conn):
            self.dialect.ensure_schema(conn, self.schema)
            self.dialect.create_table(conn, self.schema, table, columns, key)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Run one statement in its own committed transaction."""
        conn = self.connect()
        with self.dialect.transaction(conn):
            conn.cursor().execute(sql, tuple(params))

    def select(self, table: str, order_by: str) -> list[dict[str, Any]]:
        conn = self.connect()
        columns = self.dialect.introspect_columns(conn, self.schema, table, require_primary_key=False)
        cur = conn.cursor()
        cur.execute(f"SELECT {self.dialect.columns_sql([c.name for c in columns])}"
                    f" FROM {self.dialect.qualified(self.schema, table)} ORDER BY {self.dialect.quote_ident(order_by)}")
        rows = [{c.name: self.dialect.decode(c, v) for c, v in zip(columns, r, strict=True)} for r in cur.fetchall()]
        conn.rollback()
        return rows

    def close(self) -> None:
        for conn in self.conns:
            try:
                conn.rollback()
                conn.close()
            except Exception:
                pass
