"""The HQ change generator: the mix it reports is what it did, with fresh MODIFIEDDATETIMEs."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable

import pytest

from cdx.demo.workload import MIX, hq_changes
from cdx.dialects import Connection, get_dialect
from cdx.topology import Topology
from cdx.verify import compare, expected_channel_rows

SQLITE = get_dialect("sqlite")


def count(conn: Connection, table: str, where: str = "") -> int:
    return int(conn.execute(f"SELECT COUNT(*) FROM {SQLITE.qualified('dbo', table)} {where}").fetchone()[0])


def test_changes_match_the_counts(seeded_sqlite: Callable[..., Connection]) -> None:
    conn = seeded_sqlite()
    before = {t: count(conn, t) for t in ("PRICEDISCTABLE", "RETAILPERIODICDISCOUNT", "INVENTTABLE", "ECORESPRODUCT")}
    start = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    counts = hq_changes(conn, SQLITE, random.Random(1), 200, batch=7)
    assert sum(counts.values()) == 200 and set(counts) == set(MIX)
    assert all(counts[op] > 0 for op in MIX)
    entities = 2
    assert count(conn, "ECORESPRODUCT") == before["ECORESPRODUCT"] + counts["product_insert"]
    assert count(conn, "INVENTTABLE") == before["INVENTTABLE"] + entities * counts["product_insert"]
    assert count(conn, "PRICEDISCTABLE") == (before["PRICEDISCTABLE"] + entities * counts["product_insert"]
                                             - counts["price_delete"])
    assert count(conn, "RETAILPERIODICDISCOUNT") == before["RETAILPERIODICDISCOUNT"] - counts["discount_delete"]
    since = f"WHERE \"MODIFIEDDATETIME\" >= '{start.isoformat(sep=' ')}'"
    assert 0 < count(conn, "PRICEDISCTABLE", since) <= counts["price_update"] + entities * counts["product_insert"]
    assert 0 < count(conn, "CUSTTABLE", since) <= counts["customer_update"]
    newest = conn.execute(f"SELECT MAX(\"MODIFIEDDATETIME\") FROM {SQLITE.qualified('dbo', 'CUSTTABLE')}").fetchone()[0]
    assert start <= dt.datetime.fromisoformat(newest) <= dt.datetime.now(dt.UTC).replace(tzinfo=None)


def test_same_rng_same_channel_data(seeded_sqlite: Callable[..., Connection], sample: Topology) -> None:
    a, b = seeded_sqlite("a"), seeded_sqlite("b")
    assert hq_changes(a, SQLITE, random.Random(5), 60) == hq_changes(b, SQLITE, random.Random(5), 60, batch=60)
    for channel in ("store-0001", "store-1002"):
        report = compare(expected_channel_rows(a, SQLITE, sample, channel),
                         expected_channel_rows(b, SQLITE, sample, channel))
        assert report.ok, report.summary()


def test_deletes_fall_back_when_nothing_is_left(seeded_sqlite: Callable[..., Connection]) -> None:
    conn = seeded_sqlite(scale=0.005)
    discounts = count(conn, "RETAILPERIODICDISCOUNT")
    counts = hq_changes(conn, SQLITE, random.Random(2), discounts + 5, mix={"discount_delete": 1})
    assert counts["discount_delete"] == discounts and counts["price_delete"] == 5
    with pytest.raises(ValueError, match="unknown operations"):
        hq_changes(conn, SQLITE, random.Random(2), 1, mix={"drop_table": 1})


@pytest.mark.integration
def test_changes_on_postgresql(postgres: str, sample: Topology) -> None:
    from cdx.demo.seed import seed_hq

    pg = get_dialect("postgresql")
    with pg.connect(postgres) as conn:
        seed_hq(conn, pg, sample, scale=0.01)
        counts = hq_changes(conn, pg, random.Random(3), 80, batch=4)
        assert sum(counts.values()) == 80
        rows = conn.execute('SELECT COUNT(*) FROM "dbo"."ECORESPRODUCT"').fetchone()
        assert rows is not None and rows[0] == 50 + counts["product_insert"]
