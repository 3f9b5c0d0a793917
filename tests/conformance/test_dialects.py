"""Dialect conformance: every dialect must pass every test here (see conftest.Db)."""

from __future__ import annotations

import datetime as dt
import sqlite3
import uuid
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from cdx.dialects import (
    ColumnInfo,
    LogicalType,
    classify_error,
    connect,
    dialect_of,
    get_dialect,
    key_columns,
    validate_identifier,
)
from cdx.dialects.postgresql import libpq_dsn
from cdx.dialects.sqlite import sqlite_path
from cdx.dialects.sqlserver import odbc_connection_string
from cdx.errors import ConfigError, FatalError, RetriableError, SkippableError

from .harness import Db

L = LogicalType
ALL_TYPES = [
    ColumnInfo("ID", L.INT64, primary_key=True),
    ColumnInfo("I32", L.INT32),
    ColumnInfo("F64", L.FLOAT64),
    ColumnInfo("DEC", L.DECIMAL, precision=32, scale=16),
    ColumnInfo("STR", L.STRING, length=60),
    ColumnInfo("TXT", L.STRING),
    ColumnInfo("FLAG", L.BOOL),
    ColumnInfo("BIN", L.BYTES),
    ColumnInfo("DAY", L.DATE),
    ColumnInfo("TS", L.TIMESTAMP),
    ColumnInfo("GUID", L.UUID, nullable=False),
]
ROW = (1, -2_147_483_648, 1.25, Decimal("1234567890123456.1234567890123456"), "Ünïcode ✓ 'quoted'",
       "x" * 5000, True, b"\x00\xff\x10", dt.date(2024, 2, 29), dt.datetime(2024, 2, 29, 23, 59, 58, 123456),
       uuid.UUID("12345678-1234-5678-1234-567812345678"))
NAMES = [c.name for c in ALL_TYPES]


def items_table(db: Db, table: str = "ITEMS") -> None:
    db.create(table, [ColumnInfo("K1", L.INT32), ColumnInfo("K2", L.STRING, length=20),
                      ColumnInfo("NAME", L.STRING, length=50), ColumnInfo("QTY", L.INT64)], ["K1", "K2"])


def test_create_and_introspect_round_trip_every_logical_type(db: Db) -> None:
    db.create("ALLTYPES", ALL_TYPES, ["ID"])
    conn = db.connect()
    found = db.dialect.introspect_columns(conn, db.schema, "ALLTYPES")
    assert [(c.name, c.logical_type) for c in found] == [(c.name, c.logical_type) for c in ALL_TYPES]
    by_name = {c.name: c for c in found}
    assert (by_name["DEC"].precision, by_name["DEC"].scale) == (32, 16)
    assert by_name["STR"].length == 60 and by_name["TXT"].length is None
    assert by_name["ID"].primary_key and not by_name["ID"].nullable and by_name["ID"].key_position == 1
    assert not by_name["GUID"].nullable and by_name["I32"].nullable
    assert key_columns(found) == ["ID"]
    with db.dialect.transaction(conn):
        db.dialect.upsert_rows(conn, db.schema, "ALLTYPES", NAMES, ["ID"], [ROW, (2, *[None] * 9, ROW[-1])])
    rows = db.select("ALLTYPES", "ID")
    assert rows[0] == dict(zip(NAMES, ROW, strict=True))
    assert rows[1] == {**dict.fromkeys(NAMES), "ID": 2, "GUID": ROW[-1]}
    assert type(rows[0]["DEC"]) is Decimal and type(rows[0]["FLAG"]) is bool


def test_bulk_ops_and_state_in_a_rolled_back_transaction_leave_nothing(db: Db) -> None:
    items_table(db)
    conn = db.connect()
    with db.dialect.transaction(conn):
        db.dialect.ensure_state_table(conn)
    with pytest.raises(RuntimeError), db.dialect.transaction(conn):
        cols = ["K1", "K2", "NAME", "QTY"]
        assert db.dialect.upsert_rows(conn, db.schema, "ITEMS", cols, ["K1", "K2"], [(1, "a", "x", 1)]) >= 1
        assert db.dialect.insert_ignore_existing(conn, db.schema, "ITEMS", cols, ["K1", "K2"],
                                                 [(1, "a", "y", 2), (2, "b", "z", 3)]) == 1
        assert db.dialect.delete_rows(conn, db.schema, "ITEMS", ["K1", "K2"], [(2, "b")]) == 1
        db.dialect.write_state(conn, "sink/ITEMS", {"offset": "42"})
        assert db.dialect.read_state(conn, "sink/ITEMS") == {"offset": "42"}
        raise RuntimeError("crash before commit")
    assert db.select("ITEMS", "K1") == []
    with db.dialect.transaction(conn):
        assert db.dialect.read_state(conn, "sink/ITEMS") == {}


def test_upsert_updates_inserts_and_last_duplicate_wins(db: Db) -> None:
    items_table(db)
    conn = db.connect()
    cols, keys = ["K1", "K2", "NAME", "QTY"], ["K1", "K2"]
    with db.dialect.transaction(conn):
        db.dialect.upsert_rows(conn, db.schema, "ITEMS", cols, keys, [(1, "a", "one", 1), (2, "a", "two", 2)])
    with db.dialect.transaction(conn):
        db.dialect.upsert_rows(conn, db.schema, "ITEMS", cols, keys,
                               [(1, "a", "first", 10), (3, "a", "three", 3), (1, "a", "last", 11)])
        db.dialect.upsert_rows(conn, db.schema, "ITEMS", ["K1", "K2", "NAME"], keys, [(2, "a", "renamed")])
    assert db.select("ITEMS", "K1") == [
        {"K1": 1, "K2": "a", "NAME": "last", "QTY": 11},
        {"K1": 2, "K2": "a", "NAME": "renamed", "QTY": 2},  # columns not given keep their value
        {"K1": 3, "K2": "a", "NAME": "three", "QTY": 3},
    ]
    with db.dialect.transaction(conn):  # key-only upserts are fine
        db.dialect.upsert_rows(conn, db.schema, "ITEMS", keys, keys, [(1, "a"), (4, "b")])
    assert [(r["K1"], r["NAME"]) for r in db.select("ITEMS", "K1")] == [(1, "last"), (2, "renamed"),
                                                                        (3, "three"), (4, None)]
    assert db.dialect.upsert_rows(conn, db.schema, "ITEMS", cols, keys, []) == 0


def test_bulk_upsert_of_a_large_batch_keeps_the_same_semantics(db: Db) -> None:
    """Large batches may take another path than small ones (PostgreSQL: staging table + COPY instead of one
    ``INSERT ... VALUES``): the last duplicate still wins, and ``insert_ignore_existing`` keeps the first."""
    items_table(db)
    conn = db.connect()
    cols, keys = ["K1", "K2", "NAME", "QTY"], ["K1", "K2"]
    rows = [(i, "a", f"first {i}", i) for i in range(3000)] + [(i, "a", f"last {i}", -i) for i in range(0, 3000, 7)]
    with db.dialect.transaction(conn):
        db.dialect.upsert_rows(conn, db.schema, "ITEMS", cols, keys, rows)
        inserted = db.dialect.insert_ignore_existing(
            conn, db.schema, "ITEMS", cols, keys, [(i, "b", f"first {i}", i) for i in range(1500)]
            + [(i, "b", "second", 0) for i in range(1500)] + [(i, "a", "ignored", 0) for i in range(10)])
    assert inserted == 1500
    got = {(r["K1"], r["K2"]): (r["NAME"], r["QTY"]) for r in db.select("ITEMS", "K1")}
    assert len(got) == 4500
    assert got[(7, "a")] == ("last 7", -7) and got[(8, "a")] == ("first 8", 8) and got[(0, "a")] == ("last 0", 0)
    assert got[(5, "b")] == ("first 5", 5)


def test_load_rows_inserts_a_bulk_load_and_upserts_once_keys_exist(db: Db) -> None:
    """``load_rows`` (distinct keys, as a bootstrap's batches): the plain bulk load into an empty table, and the
    same result as ``upsert_rows`` when some keys exist (PostgreSQL: the ``COPY`` fails, the upsert runs), in the
    caller's transaction (a rollback leaves nothing)."""
    items_table(db)
    conn = db.connect()
    cols, keys = ["K1", "K2", "NAME", "QTY"], ["K1", "K2"]
    first = [(i, "a", f"first {i}", i) for i in range(3000)]
    with db.dialect.transaction(conn):
        plain = db.dialect.load_rows(conn, db.schema, "ITEMS", cols, keys, first)
    assert plain == (db.name == "postgresql")
    with pytest.raises(RuntimeError), db.dialect.transaction(conn):
        db.dialect.load_rows(conn, db.schema, "ITEMS", cols, keys, [(i, "c", "gone", i) for i in range(3000)])
        raise RuntimeError("crash before commit")
    again = [(i, "a", f"second {i}", -i) for i in range(2990, 3000)] + [(i, "b", "new", i) for i in range(2000)]
    with db.dialect.transaction(conn):
        assert not db.dialect.load_rows(conn, db.schema, "ITEMS", cols, keys, again)
    got = {(r["K1"], r["K2"]): (r["NAME"], r["QTY"]) for r in db.select("ITEMS", "K1")}
    assert len(got) == 5000 and not any(k[1] == "c" for k in got)
    assert got[(2989, "a")] == ("first 2989", 2989) and got[(2995, "a")] == ("second 2995", -2995)
    assert got[(5, "b")] == ("new", 5)


def test_bulk_columns_of_mixed_types_and_nulls_round_trip(db: Db) -> None:
    """Bulk rows whose columns mix NULLs with values the driver cannot bind as they are (SQLite encodes such
    columns, and only those)."""
    db.create("ALLTYPES", ALL_TYPES, ["ID"])
    conn = db.connect()
    rows = [ROW, (2, *[None] * 9, ROW[-1]), (3, 7, None, Decimal("-0.5"), None, "t", False, None, None,
                                             dt.datetime(2024, 1, 1), ROW[-1])]
    with db.dialect.transaction(conn):
        db.dialect.load_rows(conn, db.schema, "ALLTYPES", NAMES, ["ID"], rows + [
            (i, i, float(i), Decimal(i) / 8, str(i), "", i % 2 == 0, bytes([i % 256]), dt.date(2024, 1, 1 + i % 28),
             dt.datetime(2024, 1, 1, 0, 0, i % 60), ROW[-1]) for i in range(10, 500)])
    got = db.select("ALLTYPES", "ID")
    assert got[0] == dict(zip(NAMES, ROW, strict=True)) and got[1] == {**dict.fromkeys(NAMES), "ID": 2, "GUID": ROW[-1]}
    assert got[2]["FLAG"] is False and got[2]["DEC"] == Decimal("-0.5") and got[2]["TS"] == dt.datetime(2024, 1, 1)
    assert len(got) == 493 and got[-1]["FLAG"] is False and got[-1]["DEC"] == Decimal(499) / 8


def test_bulk_upsert_of_values_without_floats_or_bytes_round_trips(db: Db) -> None:
    """A large batch whose values are all strings, integers and values encoded as such (SQLite: one statement over
    the batch as JSON) reads back as row by row would: unicode, quotes, escapes (and on SQLite a NUL inside a
    string), 64-bit limits, booleans, decimals, dates, timestamps and uuids; a key repeated later wins."""
    db.create("ALLTYPES", ALL_TYPES, ["ID"])
    conn = db.connect()
    odd = ["Ünïcode ✓ 'q' \"dq\" \\ \u2028 \t", "", "\\u0000 literal"]

    def row(i: int, text: str | None) -> tuple[Any, ...]:
        return (i, i % 2**31 - (2**31 if i % 3 else 0), None, Decimal(i % 1000) / 16, text, str(i) * 3, i % 2 == 0,
                None, dt.date(2024, 1, 1 + i % 28), dt.datetime(2024, 1, 1, 0, 0, i % 60, i % 10**6),
                uuid.UUID(int=i % 2**128))

    rows = [row(i, odd[i % len(odd)] if i % 5 else None) for i in [-(2**63), 2**63 - 1, *range(1, 400)]]
    nul = [row(i, "nul\x00inside") for i in range(1000, 1300)] if db.name == "sqlite" else []
    with db.dialect.transaction(conn):
        db.dialect.upsert_rows(conn, db.schema, "ALLTYPES", NAMES, ["ID"], [*rows, row(7, "last")])
        db.dialect.upsert_rows(conn, db.schema, "ALLTYPES", NAMES, ["ID"], nul)
    got = {r["ID"]: r for r in db.select("ALLTYPES", "ID")}
    assert len(got) == 401 + len(nul) and got[7]["STR"] == "last"
    rows += nul
    for r in rows:
        assert got[r[0]] == dict(zip(NAMES, r if r[0] != 7 else row(7, "last"), strict=True)), r


def test_insert_ignore_existing_leaves_existing_rows_untouched(db: Db) -> None:
    items_table(db)
    conn = db.connect()
    cols, keys = ["K1", "K2", "NAME", "QTY"], ["K1", "K2"]
    with db.dialect.transaction(conn):
        db.dialect.upsert_rows(conn, db.schema, "ITEMS", cols, keys, [(1, "a", "original", 1)])
    with db.dialect.transaction(conn):
        inserted = db.dialect.insert_ignore_existing(
            conn, db.schema, "ITEMS", cols, keys,
            [(1, "a", "changed", 9), (2, "a", "new", 2), (2, "a", "dup", 3), (3, "b", "new", 4)])
    assert inserted == 2
    assert [(r["K1"], r["NAME"]) for r in db.select("ITEMS", "K1")] == [(1, "original"), (2, "new"), (3, "new")]


def test_delete_rows_counts_and_ignores_missing_keys(db: Db) -> None:
    items_table(db)
    conn = db.connect()
    cols, keys = ["K1", "K2", "NAME", "QTY"], ["K1", "K2"]
    with db.dialect.transaction(conn):
        db.dialect.upsert_rows(conn, db.schema, "ITEMS", cols, keys, [(i, "a", "n", i) for i in range(5)])
    with db.dialect.transaction(conn):
        assert db.dialect.delete_rows(conn, db.schema, "ITEMS", keys, [(0, "a"), (3, "a"), (9, "a"), (1, "b")]) == 2
        assert db.dialect.delete_rows(conn, db.schema, "ITEMS", keys, []) == 0
    assert [r["K1"] for r in db.select("ITEMS", "K1")] == [1, 2, 4]


def test_state_table_round_trip(db: Db) -> None:
    conn = db.connect()
    with db.dialect.transaction(conn):
        db.dialect.ensure_state_table(conn)
        db.dialect.ensure_state_table(conn)  # idempotent
        db.dialect.write_state(conn, "a", {"x": "1", "y": "2"})
        db.dialect.write_state(conn, "b", {"x": "other"})
    with db.dialect.transaction(conn):
        db.dialect.write_state(conn, "a", {"x": "3", "z": "é" * 300})
        db.dialect.write_state(conn, "a", {})
    with db.dialect.transaction(conn):
        assert db.dialect.read_state(conn, "a") == {"x": "3", "y": "2", "z": "é" * 300}
        assert db.dialect.read_state(conn, "b") == {"x": "other"}
        assert db.dialect.read_state(conn, "none") == {}


def test_odd_but_valid_names_are_quoted(db: Db) -> None:
    columns = [ColumnInfo("select", L.INT32), ColumnInfo("From", L.STRING, length=10),
               ColumnInfo("_order", L.INT64), ColumnInfo("Key", L.STRING, length=10)]
    db.create("group", columns, ["select", "From"])
    conn = db.connect()
    found = db.dialect.introspect_columns(conn, db.schema, "group")
    assert [c.name for c in found] == ["select", "From", "_order", "Key"]
    assert key_columns(found) == ["select", "From"]
    names = [c.name for c in columns]
    with db.dialect.transaction(conn):
        db.dialect.upsert_rows(conn, db.schema, "group", names, ["select", "From"], [(1, "a", 2, "k")])
        db.dialect.add_column(conn, db.schema, "group", ColumnInfo("where", L.BOOL, nullable=False))
        db.dialect.upsert_rows(conn, db.schema, "group", [*names, "where"], ["select", "From"],
                               [(1, "a", 3, "k", True)])
    assert db.select("group", "select") == [{"select": 1, "From": "a", "_order": 3, "Key": "k", "where": True}]


@pytest.mark.parametrize("bad", ['a"b', "a;DROP TABLE x", "1abc", "", "a b", "a.b", "a-b", "naïve", "a]b", "x'y"])
def test_invalid_identifiers_are_rejected(db: Db, bad: str) -> None:
    conn = db.connect()
    with pytest.raises(ConfigError, match="invalid"):
        db.dialect.quote_ident(bad)
    with pytest.raises(ConfigError, match="invalid"):
        db.dialect.create_table(conn, db.schema, bad, [ColumnInfo("ID", L.INT32)], ["ID"])
    with pytest.raises(ConfigError, match="invalid"):
        db.dialect.create_table(conn, db.schema, "T", [ColumnInfo(bad, L.INT32)], [bad])
    with pytest.raises(ConfigError, match="invalid"):
        db.dialect.introspect_columns(conn, bad, "T")
    with pytest.raises(ConfigError, match="invalid"):
        db.dialect.upsert_rows(conn, db.schema, "T", ["ID", bad], ["ID"], [(1, 2)])


def test_introspect_missing_table_and_table_without_primary_key(db: Db) -> None:
    conn = db.connect()
    with pytest.raises(ConfigError, match=rf"table {db.schema}\.NOPE does not exist"):
        db.dialect.introspect_columns(conn, db.schema, "NOPE")
    with db.dialect.transaction(conn):
        db.dialect.ensure_schema(conn, db.schema)
    q = db.dialect.quote_ident
    db.execute(f"CREATE TABLE {db.dialect.qualified(db.schema, 'KEYLESS')} ({q('A')} int, {q('B')} varchar(10))")
    with pytest.raises(ConfigError, match=rf"table {db.schema}\.KEYLESS has no primary key; cdx needs one to"
                                          " key records; add one"):
        db.dialect.introspect_columns(conn, db.schema, "KEYLESS")
    assert [c.name for c in db.dialect.introspect_columns(conn, db.schema, "KEYLESS",
                                                          require_primary_key=False)] == ["A", "B"]
    assert db.dialect.table_exists(conn, db.schema, "KEYLESS")
    assert not db.dialect.table_exists(conn, db.schema, "NOPE")


def test_create_table_requires_a_primary_key_and_is_idempotent(db: Db) -> None:
    conn = db.connect()
    with pytest.raises(ConfigError, match="no primary key"):
        db.dialect.create_table(conn, db.schema, "T", [ColumnInfo("ID", L.INT32)], [])
    items_table(db)
    items_table(db)  # exists: left as it is
    conn = db.connect()
    with db.dialect.transaction(conn):
        assert db.dialect.add_column(conn, db.schema, "ITEMS", ColumnInfo("EXTRA", L.DECIMAL, precision=10,
                                                                          scale=2))
        assert not db.dialect.add_column(conn, db.schema, "ITEMS", ColumnInfo("EXTRA", L.DECIMAL))
    extra = db.dialect.introspect_columns(conn, db.schema, "ITEMS")[-1]
    assert (extra.name, extra.logical_type, extra.precision, extra.scale, extra.nullable) == \
        ("EXTRA", L.DECIMAL, 10, 2, True)


def test_driver_errors_are_classified(db: Db) -> None:
    items_table(db)
    conn = db.connect()
    cols, keys = ["K1", "K2", "NAME", "QTY"], ["K1", "K2"]
    with db.dialect.transaction(conn):
        db.dialect.upsert_rows(conn, db.schema, "ITEMS", cols, keys, [(1, "a", "n", 1)])
    p = db.dialect.placeholder
    target = db.dialect.qualified(db.schema, "ITEMS")
    insert = f"INSERT INTO {target} ({db.dialect.columns_sql(keys)}) VALUES ({p}, {p})"
    for params in [(1, "a"), (None, "b")]:  # duplicate key, NOT NULL violation
        with pytest.raises(Exception) as caught, db.dialect.transaction(conn):
            conn.cursor().execute(insert, params)
        assert db.dialect.classify_error(caught.value) is SkippableError, caught.value
        assert classify_error(caught.value) is SkippableError
    with pytest.raises(Exception) as caught, db.dialect.transaction(conn):
        conn.cursor().execute("SELEC nonsense")
    assert db.dialect.classify_error(caught.value) is FatalError


def test_synthetic_driver_errors_are_classified() -> None:
    locked = sqlite3.OperationalError("database is locked")
    assert classify_error(locked) is RetriableError
    assert classify_error(sqlite3.IntegrityError("UNIQUE constraint failed")) is SkippableError
    assert classify_error(psycopg.errors.SerializationFailure("x")) is RetriableError
    assert classify_error(psycopg.errors.DeadlockDetected("x")) is RetriableError
    assert classify_error(psycopg.OperationalError("server closed the connection unexpectedly")) is RetriableError
    assert classify_error(psycopg.errors.NumericValueOutOfRange("x")) is SkippableError
    assert classify_error(psycopg.errors.UndefinedTable("x")) is FatalError

    def odbc(kind: str, state: str, message: str) -> Exception:
        cls = type(kind, (Exception,), {"__module__": "pyodbc"})
        return cls(state, message)

    assert classify_error(odbc("OperationalError", "08S01", "[08S01] Communication link failure (0)")) \
        is RetriableError
    assert classify_error(odbc("Error", "40001", "[40001] ... chosen as the deadlock victim. (1205)")) \
        is RetriableError
    assert classify_error(odbc("IntegrityError", "23000", "[23000] Violation of PRIMARY KEY (2627)")) \
        is SkippableError
    assert classify_error(odbc("DataError", "22001", "[22001] String or binary data would be truncated (8152)")) \
        is SkippableError
    assert classify_error(odbc("ProgrammingError", "42S02", "[42S02] Invalid object name 'x'. (208)")) \
        is FatalError
    assert classify_error(ConfigError("x")) is FatalError
    assert classify_error(SkippableError("x")) is SkippableError
    assert classify_error(ValueError("x")) is FatalError


def test_names_dsns_and_lookup() -> None:
    sqlite_d = get_dialect("SQLite3")
    assert sqlite_d.physical_table("ax", "INVENTTABLE") == (None, "ax_INVENTTABLE")
    assert sqlite_d.qualified("ax", "INVENTTABLE") == '"ax_INVENTTABLE"'
    assert get_dialect("pg").qualified("ax", "INVENTTABLE") == '"ax"."INVENTTABLE"'
    assert get_dialect("mssql").qualified("ax", "INVENTTABLE") == "[ax].[INVENTTABLE]"
    assert get_dialect("postgres").kernel_table("cdx_state") == '"cdx"."cdx_state"'
    assert sqlite_d.kernel_table("cdx_state") == '"cdx_state"'
    with pytest.raises(ConfigError, match="unknown database dialect"):
        get_dialect("oracle")
    with pytest.raises(ConfigError, match="longer than 63"):
        get_dialect("postgresql").quote_ident("x" * 64)
    assert validate_identifier("_Ok_1") == "_Ok_1"
    assert sqlite_path("sqlite:///rel/x.db") == "rel/x.db"
    assert sqlite_path("sqlite:////abs/x.db") == "/abs/x.db"
    assert sqlite_path("/plain/x.db") == "/plain/x.db"
    assert libpq_dsn("postgresql+psycopg://u@h/db") == "postgresql://u@h/db"
    assert odbc_connection_string("DRIVER={X};SERVER=s") == "DRIVER={X};SERVER=s"
    assert odbc_connection_string(
        "mssql+pyodbc://sa:p%40ss%3Bw@db.local:1433/AXDB?driver=ODBC+Driver+17+for+SQL+Server"
        "&TrustServerCertificate=yes") == ("DRIVER={ODBC Driver 17 for SQL Server};SERVER=db.local,1433;"
                                           "DATABASE=AXDB;UID=sa;PWD={p@ss;w};TrustServerCertificate=yes")
    assert odbc_connection_string("mssql://host%5CSQLEXPRESS/db") == \
        "DRIVER={ODBC Driver 18 for SQL Server};SERVER=host\\SQLEXPRESS;DATABASE=db;Trusted_Connection=yes"


def test_connect_and_dialect_of(sqlite: object, postgres: str) -> None:
    lite = connect("sqlite", f"sqlite:///{sqlite}")
    pg = connect("postgresql", postgres)
    try:
        assert dialect_of(lite).name == "sqlite" and dialect_of(pg).name == "postgresql"
        assert lite.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert not pg.autocommit
    finally:
        lite.close()
        pg.close()
    with pytest.raises(ConfigError):
        dialect_of(object())
