"""Seeded master data: deterministic, consistent with the topology, identical across databases."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from cdx.demo.retail_schema import HQ_TABLES
from cdx.demo.seed import generate, seed_hq
from cdx.dialects import Connection, get_dialect
from cdx.topology import Topology
from cdx.verify import checksum, compare, expected_channel_rows

SQLITE = get_dialect("sqlite")
SMALL = 0.02  # as in conftest.seeded_sqlite


def column(table: str, rows: list[tuple[object, ...]], name: str) -> list[object]:
    i = HQ_TABLES[table].column_names.index(name)
    return [r[i] for r in rows]


def test_counts_at_scale_1(sample: Topology) -> None:
    rows = generate(sample)
    assert {t: len(r) for t, r in rows.items()} == {
        "ECORESPRODUCT": 5_000, "INVENTTABLE": 10_000, "PRICEDISCTABLE": 20_000, "RETAILPERIODICDISCOUNT": 400,
        "DIRPARTYTABLE": 5_100, "CUSTTABLE": 5_000, "RETAILSTAFFTABLE": 100, "RETAILCHANNELTABLE": 10,
        "RETAILTERMINALTABLE": 27}
    for table, data in rows.items():
        key = [HQ_TABLES[table].column_names.index(k) for k in HQ_TABLES[table].primary_key]
        assert len({tuple(r[i] for i in key) for r in data}) == len(data), f"duplicate keys in {table}"


def test_generate_is_deterministic(sample: Topology) -> None:
    assert generate(sample, 0.05, seed=7) == generate(sample, 0.05, seed=7)
    assert generate(sample, 0.05, seed=7)["CUSTTABLE"] != generate(sample, 0.05, seed=8)["CUSTTABLE"]


def test_channels_and_terminals_match_the_topology(sample: Topology) -> None:
    rows = generate(sample, SMALL)
    channels = {r[1]: r for r in rows["RETAILCHANNELTABLE"]}  # RECID -> row
    for info in sample.channels():
        row = channels[int(info.channel.attributes["recid"])]
        assert row[0] == info.group.legal_entities[0]
    terminals = rows["RETAILTERMINALTABLE"]
    store_of = dict(zip(column("RETAILTERMINALTABLE", terminals, "TERMINALID"),
                        column("RETAILTERMINALTABLE", terminals, "STORERECID"), strict=True))
    for info in sample.channels():
        for reg in info.channel.offline_registers:
            assert store_of[reg.id] == info.channel.attributes["recid"]
    assert set(store_of.values()) <= set(channels)


def test_references_are_consistent(sample: Topology) -> None:
    rows = generate(sample, SMALL)
    products = set(column("ECORESPRODUCT", rows["ECORESPRODUCT"], "RECID"))
    parties = set(column("DIRPARTYTABLE", rows["DIRPARTYTABLE"], "RECID"))
    assert set(column("INVENTTABLE", rows["INVENTTABLE"], "PRODUCT")) == products
    assert set(column("CUSTTABLE", rows["CUSTTABLE"], "PARTY")) | set(
        column("RETAILSTAFFTABLE", rows["RETAILSTAFFTABLE"], "PERSON")) == parties
    items = {(r[0], r[1]) for r in rows["INVENTTABLE"]}
    assert {(r[0], r[4]) for r in rows["PRICEDISCTABLE"]} == items  # (DATAAREAID, ITEMRELATION)
    customers = {(r[0], r[1]) for r in rows["CUSTTABLE"]}
    assert {(r[0], r[6]) for r in rows["RETAILCHANNELTABLE"]} <= customers  # DEFAULTCUSTACCOUNT
    assert {r[0] for r in rows["INVENTTABLE"]} == {"usrt", "dert"}


def channel_checksums(conn: Connection, sample: Topology, dialect_name: str = "sqlite") -> dict[str, dict]:
    d = get_dialect(dialect_name)
    out = {}
    for db in sample.databases():
        expected = expected_channel_rows(conn, d, sample, db.owner_id)
        out[db.owner_id] = {t: checksum(rows) for t, rows in expected.items()}
    return out


def test_seeded_databases_have_the_same_checksums(seeded_sqlite: Callable[..., Connection],
                                                  sample: Topology) -> None:
    a, b, c = seeded_sqlite("a"), seeded_sqlite("b"), seeded_sqlite("c", seed=43)
    sums = channel_checksums(a, sample)
    assert sums == channel_checksums(b, sample)
    assert sums != channel_checksums(c, sample)
    us = expected_channel_rows(a, SQLITE, sample, "store-0001")
    de = expected_channel_rows(a, SQLITE, sample, "store-1001")
    assert {k[0] for k in us[("ax", "INVENTTABLE")]} == {"usrt"}
    assert {k[0] for k in de[("ax", "INVENTTABLE")]} == {"dert"}
    assert len(us[("ax", "RETAILCHANNELTABLE")]) == 1 and len(us[("ax", "RETAILTERMINALTABLE")]) == 3
    assert ("ax", "RETAILTERMINALTABLE") not in expected_channel_rows(a, SQLITE, sample, "online-us")


def test_reseeding_is_idempotent(seeded_sqlite: Callable[..., Connection], sample: Topology) -> None:
    conn = seeded_sqlite()
    before = channel_checksums(conn, sample)
    counts = seed_hq(conn, SQLITE, sample, scale=SMALL)
    assert counts["dbo.PRICEDISCTABLE"] == 400
    assert channel_checksums(conn, sample) == before


@pytest.mark.integration
def test_postgresql_seed_matches_sqlite(postgres: str, seeded_sqlite: Callable[..., Connection],
                                        sample: Topology) -> None:
    lite = seeded_sqlite()
    pg = get_dialect("postgresql")
    with pg.connect(postgres) as conn:
        counts = seed_hq(conn, pg, sample, scale=SMALL)
        assert counts["dbo.INVENTTABLE"] == 200
        for channel in ("store-0001", "store-1001-pos-01", "online-us"):
            report = compare(expected_channel_rows(conn, pg, sample, channel),
                             expected_channel_rows(lite, SQLITE, sample, channel))
            assert report.ok, report.summary()
