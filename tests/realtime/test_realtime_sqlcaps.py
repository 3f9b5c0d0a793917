"""Per-dialect statement shapes of the service (SQL Server has no ON CONFLICT, LIMIT or FOR UPDATE)."""

from __future__ import annotations

import sqlite3

from cdx.dialects import get_dialect
from cdx.realtime.schema import TABLES, create_tables
from cdx.realtime.sqlcaps import caps_for


def test_sqlserver_statements_use_its_own_syntax() -> None:
    caps = caps_for("mssql")
    sql = caps.insert_if_absent("[rts].[NUMBERSEQ]", ["NAME", "LASTVAL"], ["NAME"])
    assert sql == ("INSERT INTO [rts].[NUMBERSEQ] ([NAME], [LASTVAL]) SELECT s.[NAME], s.[LASTVAL] FROM"
                   " (SELECT ? AS [NAME], ? AS [LASTVAL]) AS s WHERE NOT EXISTS (SELECT 1 FROM [rts].[NUMBERSEQ]"
                   " AS t WITH (UPDLOCK, HOLDLOCK) WHERE t.[NAME] = s.[NAME])")
    assert caps.locked("[rts].[GIFTCARD]") == ("[rts].[GIFTCARD] WITH (UPDLOCK, ROWLOCK)", "")
    assert caps.top(20) == ("TOP (20) ", "")


def test_postgresql_and_sqlite_statements() -> None:
    pg, lite = caps_for("postgresql"), caps_for("sqlite")
    assert pg.insert_if_absent('"rts"."NUMBERSEQ"', ["NAME", "LASTVAL"], ["NAME"]).endswith(
        'VALUES (%s, %s) ON CONFLICT ("NAME") DO NOTHING')
    assert pg.locked("t") == ("t", " FOR UPDATE") and lite.locked("t") == ("t", "")
    assert pg.top(5) == ("", " LIMIT 5")


def test_tables_are_created_once_and_idempotently() -> None:
    d = get_dialect("sqlite")
    conn = sqlite3.connect(":memory:")
    assert len(create_tables(conn, d)) == len(TABLES)
    create_tables(conn, d)
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {f"rts_{t}" for t in TABLES} <= names
