"""The retail schema: covers the sample topology and creates on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cdx.demo.retail_schema import (
    CHANNEL_UPLOAD_TABLES,
    COUNTER,
    HQ_TABLES,
    ORIGIN_COLUMN,
    channel_upload_tables,
    check_topology,
    create_channel_upload_tables,
    create_hq_tables,
    hq_tables,
    insert_sql,
)
from cdx.dialects import Connection, Dialect, get_dialect, key_columns
from cdx.errors import ConfigError
from cdx.topology import DATAAREAID, TableRef, Topology, topology_to_data
from cdx.topology.loader import validate_topology

SHARED = {"ECORESPRODUCT", "DIRPARTYTABLE"}


def test_definitions_cover_the_sample(sample: Topology) -> None:
    assert check_topology(sample) == []
    names = {ref.name for ref, _ in hq_tables(sample)}
    assert names == set(HQ_TABLES)


def test_legal_entity_columns(sample: Topology) -> None:
    for s in sample.download_subjobs():
        table = HQ_TABLES[s.hq_table.name]
        has_dataareaid = DATAAREAID in table.column_names
        assert has_dataareaid is (s.hq_table.name not in SHARED), s.hq_table
        if has_dataareaid:
            assert table.primary_key[0] == DATAAREAID
    for table in (*CHANNEL_UPLOAD_TABLES.values(), HQ_TABLES["RETAILTRANSACTIONTABLE"]):
        assert table.primary_key[:5] == (DATAAREAID, "CHANNEL", "STORE", "TERMINAL", "TRANSACTIONID")


def test_hq_only_columns_exist_for_projection(sample: Topology) -> None:
    for s in sample.download_subjobs():
        table = HQ_TABLES[s.hq_table.name]
        mapped = {f.name for f in s.fields} | {DATAAREAID}
        unmapped = set(table.column_names) - mapped
        assert {"MODIFIEDDATETIME", "CREATEDBY"} <= unmapped, s.id


def test_upload_tables(sample: Topology) -> None:
    channel = dict(channel_upload_tables(sample))
    assert set(channel) == {TableRef("ax", "RETAILTRANSACTIONTABLE"), TableRef("ax", "RETAILTRANSACTIONSALESTRANS"),
                            TableRef("ext", "CONTOSORETAILTRANSACTIONTABLE")}
    for table in channel.values():
        assert table.identity == COUNTER and (COUNTER,) in table.unique and COUNTER not in table.primary_key
    for name in ("RETAILTRANSACTIONTABLE", "RETAILTRANSACTIONSALESTRANS"):
        hq = HQ_TABLES[name]
        assert hq.identity is None and (ORIGIN_COLUMN, COUNTER) in hq.unique
        assert set(CHANNEL_UPLOAD_TABLES[name].column_names) - {"CREATEDDATETIME"} <= set(hq.column_names)
    assert {"CONTOSORETAILSEATNUMBER", "CONTOSORETAILSERVERSTAFFID"} <= set(
        HQ_TABLES["RETAILTRANSACTIONTABLE"].column_names)


def test_mismatching_topology_is_reported(sample: Topology) -> None:
    data: dict[str, Any] = topology_to_data(sample)
    data["subjobs"][0]["fields"].append("NOSUCHCOLUMN")
    data["subjobs"][1]["fields"] = ["DISPLAYPRODUCTNUMBER"]  # key RECID no longer mapped
    data["subjobs"].append({"id": "Unknown", "hq_table": "dbo.NOSUCHTABLE", "fields": ["A"], "scheduled_by": ["1040"]})
    topo = validate_topology(data)
    problems = check_topology(topo)
    assert any("NOSUCHCOLUMN" in p for p in problems)
    assert any("key column RECID" in p for p in problems)
    assert any("NOSUCHTABLE" in p for p in problems)
    with pytest.raises(ConfigError, match="NOSUCHCOLUMN"):
        create_hq_tables(get_dialect("sqlite").connect(":memory:"), get_dialect("sqlite"), topo)


def check_created(conn: Connection, d: Dialect, sample: Topology) -> None:
    for ref, table in [*hq_tables(sample), *channel_upload_tables(sample)]:
        cols = d.introspect_columns(conn, ref.schema, table.name)
        assert [c.name for c in cols] == table.column_names
        assert key_columns(cols) == list(table.primary_key)
        for got, want in zip(cols, table.columns, strict=True):
            assert got.logical_type is want.logical_type, (ref, got)
            assert got.nullable == (want.nullable and want.name not in table.primary_key), (ref, got)


def identity_works(conn: Connection, d: Dialect) -> None:
    table = CHANNEL_UPLOAD_TABLES["CONTOSORETAILTRANSACTIONTABLE"]
    cols = [DATAAREAID, "CHANNEL", "STORE", "TERMINAL", "TRANSACTIONID", "CONTOSORETAILSEATNUMBER"]
    sql = insert_sql(d, "ext", table, cols)
    with d.transaction(conn):
        for i in range(3):
            conn.cursor().execute(sql, ("usrt", 1, "s", "t", f"t-{i}", i))
    cur = conn.cursor()
    cur.execute(f"SELECT {d.quote_ident(COUNTER)} FROM {d.qualified('ext', table.name)}"
                f" ORDER BY {d.quote_ident('TRANSACTIONID')}")
    assert [r[0] for r in cur.fetchall()] == [1, 2, 3]
    explicit = insert_sql(d, "ext", table, [*cols, COUNTER])
    with pytest.raises(Exception, match=r"(?i)unique|duplicate"), d.transaction(conn):
        conn.cursor().execute(explicit, ("usrt", 1, "s", "t", "t-9", 9, 2))


def test_create_on_sqlite(sqlite: Path, sample: Topology) -> None:
    d = get_dialect("sqlite")
    conn = d.connect(str(sqlite))
    created = create_hq_tables(conn, d, sample)
    assert len(created) == len(HQ_TABLES)
    create_channel_upload_tables(conn, d, sample)
    create_hq_tables(conn, d, sample)  # idempotent
    assert d.table_exists(conn, "dbo", "INVENTTABLE") and d.physical_table("dbo", "INVENTTABLE")[1] == "dbo_INVENTTABLE"
    check_created(conn, d, sample)
    identity_works(conn, d)
    conn.close()


@pytest.mark.integration
def test_create_on_postgresql(postgres: str, sample: Topology) -> None:
    d = get_dialect("postgresql")
    with d.connect(postgres) as conn:
        create_hq_tables(conn, d, sample)
        create_channel_upload_tables(conn, d, sample)
        create_channel_upload_tables(conn, d, sample)  # idempotent
        check_created(conn, d, sample)
        identity_works(conn, d)
