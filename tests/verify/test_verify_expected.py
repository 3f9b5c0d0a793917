"""expected_channel_rows / actual_channel_rows on a tiny hand-built HQ: the routing rules, exactly."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from cdx.dialects import ColumnInfo, Connection, Dialect, LogicalType, get_dialect
from cdx.errors import ConfigError
from cdx.topology import Topology
from cdx.topology.loader import validate_topology
from cdx.verify import actual_channel_rows, compare, expected_channel_rows, verify_channel

S, I64, DEC, TS = LogicalType.STRING, LogicalType.INT64, LogicalType.DECIMAL, LogicalType.TIMESTAMP


def db(name: str) -> dict[str, str]:
    return {"dialect": "sqlite", "dsn": f"sqlite:///{name}.db"}


TOPOLOGY: dict[str, Any] = {
    "version": 1,
    "kafka": {"bootstrap_servers": "localhost:9092"},
    "hq": {"dialect": "sqlite", "dsn": "sqlite:///hq.db"},
    "jobs": [{"id": "1040", "direction": "download"}, {"id": "1070", "direction": "download"},
             {"id": "1080", "direction": "download"}],
    "subjobs": [
        {"id": "Items", "hq_table": "dbo.ITEMS", "fields": ["ITEMID", {"name": "NAME", "to_name": "ITEMNAME"}, "PRICE"],
         "scheduled_by": ["1040"],
         "extension": {"table": "ext.ITEMSEXT", "key": ["ITEMID"], "fields": ["COLOR"]}},
        {"id": "Shared", "hq_table": "dbo.SHARED", "fields": ["ID", "LABEL"], "scheduled_by": ["1040"]},
        {"id": "Channels", "hq_table": "dbo.CHANNELS", "fields": ["RECID", "NAME"], "scheduled_by": ["1070"],
         "channel_filter": {"column": "RECID", "attribute": "recid"}},
        {"id": "GermanOnly", "hq_table": "dbo.GERMAN", "channel_table": "ax.DE", "fields": ["ID"],
         "scheduled_by": ["1080"]},
    ],
    "channel_data_groups": [
        {"id": "us", "legal_entities": ["usrt"], "channels": [
            {"id": "s1", "database": db("s1"), "attributes": {"recid": 11},
             "offline_registers": [{"id": "s1-pos", "database": db("s1-pos")}]},
            {"id": "s2", "database": db("s2"), "attributes": {"recid": 12}}]},
        {"id": "de", "legal_entities": ["dert", "demf"], "channels": [
            {"id": "s3", "database": db("s3"), "attributes": {"recid": "21"}}]},
    ],
    "distribution_schedules": [
        {"id": "ALL", "direction": "download", "jobs": ["1040", "1070"], "channel_data_groups": ["us", "de"]},
        {"id": "DE", "direction": "download", "jobs": ["1080"], "channel_data_groups": ["de"]},
    ],
}

HQ_TABLES: dict[str, tuple[list[ColumnInfo], list[str], list[tuple[Any, ...]]]] = {
    "ITEMS": ([ColumnInfo("DATAAREAID", S, length=4), ColumnInfo("ITEMID", S), ColumnInfo("NAME", S),
               ColumnInfo("PRICE", DEC, precision=32, scale=16), ColumnInfo("COLOR", S),
               ColumnInfo("MODIFIEDDATETIME", TS)],
              ["DATAAREAID", "ITEMID"],
              [("usrt", "A", "Apple", Decimal("1.50"), "red", dt.datetime(2024, 1, 1)),
               ("USRT", "B", "Banana", Decimal("0.25"), "yellow", dt.datetime(2024, 1, 2)),
               ("dert", "A", "Apfel", Decimal("1.40"), "rot", dt.datetime(2024, 1, 3)),
               ("demf", "C", "Kirsche", Decimal("3"), "rot", dt.datetime(2024, 1, 4)),
               ("frrt", "A", "Pomme", Decimal("1.60"), "rouge", dt.datetime(2024, 1, 5))]),
    "SHARED": ([ColumnInfo("ID", I64), ColumnInfo("LABEL", S), ColumnInfo("CREATEDBY", S)], ["ID"],
               [(1, "one", "admin"), (2, "two", "admin")]),
    "CHANNELS": ([ColumnInfo("DATAAREAID", S), ColumnInfo("RECID", I64), ColumnInfo("NAME", S)],
                 ["DATAAREAID", "RECID"],
                 [("usrt", 11, "Houston"), ("usrt", 12, "Seattle"), ("dert", 21, "Berlin"),
                  ("usrt", 21, "wrong entity"), ("dert", 11, "wrong entity")]),
    "GERMAN": ([ColumnInfo("DATAAREAID", S), ColumnInfo("ID", I64)], ["DATAAREAID", "ID"], [("dert", 7), ("usrt", 8)]),
}


def build(conn: Connection, d: Dialect, tables: dict[str, tuple[list[ColumnInfo], list[str], list[tuple[Any, ...]]]],
          schema: str) -> None:
    with d.transaction(conn):
        for name, (cols, key, rows) in tables.items():
            d.ensure_schema(conn, schema)
            d.create_table(conn, schema, name, cols, key)
            d.upsert_rows(conn, schema, name, [c.name for c in cols], key, rows)


@pytest.fixture
def topo() -> Topology:
    return validate_topology(TOPOLOGY)


@pytest.fixture
def hq(tmp_path: Path) -> Iterator[Connection]:
    d = get_dialect("sqlite")
    conn = d.connect(str(tmp_path / "hq.db"))
    build(conn, d, HQ_TABLES, "dbo")
    yield conn
    conn.close()


SQLITE = get_dialect("sqlite")


def test_rules_for_a_us_store(hq: Connection, topo: Topology) -> None:
    got = expected_channel_rows(hq, SQLITE, topo, "s1")
    assert got == {
        ("ax", "ITEMS"): {("usrt", "A"): ("usrt", "A", "Apple", Decimal("1.50"), ),
                          ("USRT", "B"): ("USRT", "B", "Banana", Decimal("0.25"))},
        ("ext", "ITEMSEXT"): {("usrt", "A"): ("usrt", "A", "red"), ("USRT", "B"): ("USRT", "B", "yellow")},
        ("ax", "SHARED"): {(1,): (1, "one"), (2,): (2, "two")},
        ("ax", "CHANNELS"): {("usrt", 11): ("usrt", 11, "Houston")},
    }


def test_rules_for_a_german_store_with_two_entities(hq: Connection, topo: Topology) -> None:
    got = expected_channel_rows(hq, SQLITE, topo, "s3")
    assert got[("ax", "ITEMS")] == {("dert", "A"): ("dert", "A", "Apfel", Decimal("1.40")),
                                    ("demf", "C"): ("demf", "C", "Kirsche", Decimal("3"))}
    assert got[("ax", "CHANNELS")] == {("dert", 21): ("dert", 21, "Berlin")}  # attribute "21" matches 21
    assert got[("ax", "DE")] == {("dert", 7): ("dert", 7)}  # scheduled for this group only


def test_register_gets_what_its_channel_gets(hq: Connection, topo: Topology) -> None:
    assert expected_channel_rows(hq, SQLITE, topo, "s1-pos") == expected_channel_rows(hq, SQLITE, topo, "s1")
    assert expected_channel_rows(hq, SQLITE, topo, "s2")[("ax", "CHANNELS")] == {
        ("usrt", 12): ("usrt", 12, "Seattle")}


def test_unknown_channel_and_missing_hq_table(hq: Connection, topo: Topology, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nope"):
        expected_channel_rows(hq, SQLITE, topo, "nope")
    empty = SQLITE.connect(str(tmp_path / "empty.db"))
    with pytest.raises(ConfigError, match="does not exist"):
        expected_channel_rows(empty, SQLITE, topo, "s1")


def _channel_columns(expected: dict[Any, Any]) -> dict[tuple[str, str], tuple[list[ColumnInfo], list[str]]]:
    cols = {("ax", "ITEMS"): ["DATAAREAID", "ITEMID", "ITEMNAME", "PRICE"], ("ext", "ITEMSEXT"):
            ["DATAAREAID", "ITEMID", "COLOR"], ("ax", "SHARED"): ["ID", "LABEL"],
            ("ax", "CHANNELS"): ["DATAAREAID", "RECID", "NAME"], ("ax", "DE"): ["DATAAREAID", "ID"]}
    types = {"PRICE": ColumnInfo("PRICE", DEC, precision=32, scale=16), "ID": ColumnInfo("ID", I64),
             "RECID": ColumnInfo("RECID", I64)}
    keys = {("ax", "SHARED"): ["ID"], ("ax", "CHANNELS"): ["DATAAREAID", "RECID"], ("ax", "DE"): ["DATAAREAID", "ID"]}
    return {t: ([types.get(c, ColumnInfo(c, S)) for c in cols[t]], keys.get(t, ["DATAAREAID", "ITEMID"]))
            for t in expected}


def fill_channel(conn: Connection, d: Dialect, expected: dict[Any, Any]) -> None:
    with d.transaction(conn):
        for (schema, table), (cols, key) in _channel_columns(expected).items():
            d.ensure_schema(conn, schema)
            d.create_table(conn, schema, table, cols, key)
            d.upsert_rows(conn, schema, table, [c.name for c in cols], key, expected[(schema, table)].values())


def test_actual_reads_back_what_was_written(hq: Connection, topo: Topology, tmp_path: Path) -> None:
    expected = expected_channel_rows(hq, SQLITE, topo, "s1")
    store = SQLITE.connect(str(tmp_path / "s1.db"))
    fill_channel(store, SQLITE, expected)
    assert actual_channel_rows(store, SQLITE, topo, "s1") == expected
    report = verify_channel(hq, SQLITE, store, SQLITE, topo, "s1")
    assert report.ok, report.summary()
    assert "ax.ITEMS: ok (2 rows" in report.summary()


def test_differences_are_reported(hq: Connection, topo: Topology, tmp_path: Path) -> None:
    store = SQLITE.connect(str(tmp_path / "s1.db"))
    fill_channel(store, SQLITE, expected_channel_rows(hq, SQLITE, topo, "s1"))
    q = SQLITE.quote_ident
    with SQLITE.transaction(store):
        store.execute(f"DELETE FROM {SQLITE.qualified('ax', 'SHARED')} WHERE {q('ID')} = 2")
        store.execute(f"INSERT INTO {SQLITE.qualified('ax', 'SHARED')} VALUES (3, 'three')")
        store.execute(f"UPDATE {SQLITE.qualified('ax', 'ITEMS')} SET {q('PRICE')} = '1.55' WHERE {q('ITEMID')} = 'A'")
        store.execute(f"DROP TABLE {SQLITE.qualified('ext', 'ITEMSEXT')}")
    report = verify_channel(hq, SQLITE, store, SQLITE, topo, "s1")
    assert not report.ok
    shared, items, ext = (report.tables[t] for t in (("ax", "SHARED"), ("ax", "ITEMS"), ("ext", "ITEMSEXT")))
    assert (shared.missing, shared.extra, shared.differing) == ([(2,)], [(3,)], [])
    assert items.differing == [(("usrt", "A"), ("usrt", "A", "Apple", Decimal("1.50")),
                                ("usrt", "A", "Apple", Decimal("1.55")))]
    assert (ext.expected_count, ext.actual_count, len(ext.missing)) == (2, 0, 2)
    assert report.tables[("ax", "CHANNELS")].ok
    assert {t.table for t in report.problems()} == {("ax", "SHARED"), ("ax", "ITEMS"), ("ext", "ITEMSEXT")}


@pytest.mark.integration
def test_postgres_channel_matches_sqlite_hq(hq: Connection, topo: Topology, postgres: str) -> None:
    pg = get_dialect("postgresql")
    expected = expected_channel_rows(hq, SQLITE, topo, "s3")
    with pg.connect(postgres) as store:
        fill_channel(store, pg, expected)
        actual = actual_channel_rows(store, pg, topo, "s3")
        report = compare(expected, actual)
        assert report.ok, report.summary()
        assert actual[("ax", "ITEMS")][("demf", "C")] == ("demf", "C", "Kirsche", Decimal("3.0000000000000000"))
