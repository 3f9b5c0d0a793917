"""What both interop directions share: the HQ table, its changes, and reading a table as a comparable dict."""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Any

import psycopg
from psycopg import sql

COLUMNS = ("dataareaid", "itemid", "name", "price", "qty", "updated", "available")
KEY = ("dataareaid", "itemid")

CREATE_ITEMS = """
CREATE TABLE {table} (
  "DATAAREAID" varchar(4) NOT NULL, "ITEMID" varchar(20) NOT NULL, "NAME" varchar(60),
  "PRICE" numeric(18, 4), "QTY" bigint, "UPDATED" timestamp(6), "AVAILABLE" date,
  PRIMARY KEY ("DATAAREAID", "ITEMID"))
"""


def insert_items(dsn: str, table: sql.Composable, first: int, n: int) -> None:
    base = dt.datetime(2026, 12, 1, 8, 30, 15, 123456)
    with psycopg.connect(dsn, autocommit=True) as conn:
        for i in range(first, first + n):
            conn.execute(sql.SQL('INSERT INTO {} VALUES (%s, %s, %s, %s, %s, %s, %s)').format(table),
                         ("usrt", f"I{i:04d}", f"item {i} ü", decimal.Decimal(f"{i}.{i % 10000:04d}"), i * 7,
                          base + dt.timedelta(minutes=i, microseconds=i), dt.date(2026, 1, 1) + dt.timedelta(days=i)))


def change_items(dsn: str, table: sql.Composable) -> None:
    """Updates (values and NULLs), deletes and re-inserts of a deleted key, each its own transaction."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for i in range(0, 20, 2):
            conn.execute(sql.SQL('UPDATE {} SET "NAME" = %s, "PRICE" = "PRICE" + 0.0001, "QTY" = NULL'
                                 ' WHERE "ITEMID" = %s').format(table), (f"renamed {i}", f"I{i:04d}"))
        for i in range(30, 40):
            conn.execute(sql.SQL('DELETE FROM {} WHERE "ITEMID" = %s').format(table), (f"I{i:04d}",))
        conn.execute(sql.SQL('INSERT INTO {} VALUES (%s, %s, %s, NULL, 1, NULL, NULL)').format(table),
                     ("usrt", "I0031", "back again"))


def read_rows(dsn: str, schema: str, table: str, columns: tuple[str, ...] = COLUMNS) -> dict[tuple, tuple]:
    """``{key: row}`` of ``schema.table``, columns matched case-insensitively, timestamps naive."""
    with psycopg.connect(dsn) as conn:
        found = {r[0].casefold(): r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s",
            (schema, table))}
        missing = [c for c in columns if c not in found]
        if missing:
            raise AssertionError(f"{schema}.{table} lacks columns {missing} (has {sorted(found)})")
        query = sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(sql.Identifier(found[c]) for c in columns),
                                                     sql.Identifier(schema, table))
        rows = conn.execute(query).fetchall()
    key_idx = [columns.index(k) for k in KEY if k in columns]
    return {tuple(r[i] for i in key_idx): tuple(_plain(v) for v in r) for r in rows}


def _plain(v: Any) -> Any:
    if isinstance(v, dt.datetime) and v.tzinfo is not None:
        return v.astimezone(dt.UTC).replace(tzinfo=None)
    if isinstance(v, decimal.Decimal):
        return v.normalize()
    return v


def tables_of(dsn: str, schema: str = "public") -> list[str]:
    with psycopg.connect(dsn) as conn:
        return [r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,))]
