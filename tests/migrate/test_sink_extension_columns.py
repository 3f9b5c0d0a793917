"""Sinks create extension-table columns NOT NULL with a DEFAULT (the CDX extension rule), on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import decimal
import sqlite3
from pathlib import Path

import psycopg
import pytest

from cdx.codec import Column, LogicalType
from cdx.connectors.sink.records import Shape
from cdx.connectors.sink.tables import TableManager
from cdx.dialects import get_dialect

COLUMNS = (Column("ITEMID", LogicalType.STRING, primary_key=True, length=20),
           Column("COLOR", LogicalType.STRING, length=10), Column("QTY", LogicalType.DECIMAL, precision=12, scale=2),
           Column("SINCE", LogicalType.TIMESTAMP), Column("ACTIVE", LogicalType.BOOL), Column("DAY", LogicalType.DATE))
ADDED = Column("WEIGHT", LogicalType.FLOAT64)


def _shape(schema: str, *extra: Column) -> Shape:
    return Shape(schema, "CONTOSOITEM", (*COLUMNS, *extra), ("ITEMID",))


def _create_and_add(dsn: str, dialect_name: str) -> None:
    d = get_dialect(dialect_name)
    conn = d.connect(dsn)
    try:
        for schema in ("ext", "ax"):
            with d.transaction(conn):
                TableManager(d).ensure(conn, [_shape(schema)])
            with d.transaction(conn):
                conn.cursor().execute(f"INSERT INTO {d.qualified(schema, 'CONTOSOITEM')} ({d.quote_ident('ITEMID')})"
                                      f" VALUES ('A')")
            with d.transaction(conn):
                TableManager(d).ensure(conn, [_shape(schema, ADDED)])
    finally:
        conn.close()


def test_sqlite_extension_columns(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    _create_and_add(str(path), "sqlite")
    with sqlite3.connect(path) as conn:
        ext = {r[1]: (r[3], r[4]) for r in conn.execute("PRAGMA table_info(ext_CONTOSOITEM)")}
        plain = {r[1]: (r[3], r[4]) for r in conn.execute("PRAGMA table_info(ax_CONTOSOITEM)")}
        assert ext["COLOR"] == (1, "''") and ext["WEIGHT"] == (1, "0") and ext["QTY"] == (1, "'0'")
        assert plain["COLOR"] == (0, None) and plain["WEIGHT"] == (0, None)
    conn2 = get_dialect("sqlite").connect(str(path))
    row = conn2.execute("SELECT COLOR, QTY, SINCE, ACTIVE, DAY, WEIGHT FROM ext_CONTOSOITEM").fetchone()
    assert row == ("", "0", "1900-01-01 00:00:00.000000", 0, "1900-01-01", 0)


@pytest.mark.integration
def test_postgresql_extension_columns(postgres: str) -> None:
    _create_and_add(postgres, "postgresql")
    with psycopg.connect(postgres) as conn:
        rows = conn.execute("SELECT table_schema, column_name, is_nullable, column_default IS NOT NULL"
                            " FROM information_schema.columns WHERE table_name = 'CONTOSOITEM'").fetchall()
        info = {(s, c): (n, has) for s, c, n, has in rows}
        assert info[("ext", "WEIGHT")] == ("NO", True) and info[("ext", "ACTIVE")] == ("NO", True)
        assert info[("ax", "WEIGHT")] == ("YES", False)
        row = conn.execute('SELECT "COLOR", "QTY", "SINCE", "ACTIVE", "DAY", "WEIGHT"'
                           ' FROM ext."CONTOSOITEM"').fetchone()
    assert row == ("", decimal.Decimal("0.00"), dt.datetime(1900, 1, 1), False, dt.date(1900, 1, 1), 0.0)
