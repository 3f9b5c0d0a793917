"""The POS simulator: unique transaction ids, growing replication counters, consistent amounts."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest

from cdx.demo.pos import catalog, terminal_for, write_sales
from cdx.demo.retail_schema import COUNTER, create_channel_upload_tables
from cdx.dialects import Connection, Dialect, get_dialect
from cdx.errors import ConfigError
from cdx.topology import Topology

SQLITE = get_dialect("sqlite")


def select(conn: Connection, d: Dialect, schema: str, table: str, columns: str) -> list[tuple]:
    cur = conn.cursor()
    cur.execute(f"SELECT {columns} FROM {d.qualified(schema, table)} ORDER BY {d.quote_ident(COUNTER)}")
    return [tuple(r) for r in cur.fetchall()]


def test_terminal_for(sample: Topology) -> None:
    reg = terminal_for(sample, "store-0001-pos-01")
    assert (reg.channel, reg.store, reg.terminal, reg.dataareaid, reg.currency) == (
        5637144576, "store-0001", "store-0001-pos-01", "usrt", "USD")
    assert terminal_for(sample, "store-0001").terminal == "store-0001-pos-02"  # pos-01 is the offline register
    assert terminal_for(sample, "store-1002").terminal == "store-1002-pos-01"
    assert terminal_for(sample, "online-us").terminal == "online-us-web"
    assert terminal_for(sample, "store-1003").currency == "EUR"
    with pytest.raises(ConfigError):
        terminal_for(sample, "nope")


def test_sales_on_sqlite(sqlite: Path, sample: Topology, seeded_sqlite: Callable[..., Connection]) -> None:
    hq = seeded_sqlite()
    items = catalog(hq, SQLITE, "usrt")
    assert len(items) == 100 and all(isinstance(p, Decimal) and p > 0 for _, p in items)
    conn = SQLITE.connect(str(sqlite))
    create_channel_upload_tables(conn, SQLITE, sample)
    t = terminal_for(sample, "store-0001-pos-01")
    first = write_sales(conn, SQLITE, t.channel, t.store, t.terminal, 30, random.Random(1), items=items)
    other = write_sales(conn, SQLITE, t.channel, t.store, "store-0001-pos-02", 5, random.Random(2))
    again = write_sales(conn, SQLITE, t.channel, t.store, t.terminal, 10, random.Random(3), items=items)
    assert first.transaction_ids[0] == "store-0001-pos-01-00000001"
    assert again.transaction_ids[0] == "store-0001-pos-01-00000031"  # continues after the last id
    headers = select(conn, SQLITE, "ax", "RETAILTRANSACTIONTABLE",
                     '"TRANSACTIONID", "NETAMOUNT", "REPLICATIONCOUNTERFROMORIGIN"')
    assert [h[0] for h in headers] == first.transaction_ids + other.transaction_ids + again.transaction_ids
    assert [h[2] for h in headers] == list(range(1, 46))  # in commit order, no gaps
    lines = select(conn, SQLITE, "ax", "RETAILTRANSACTIONSALESTRANS",
                   '"TRANSACTIONID", "ITEMID", "NETAMOUNT", "REPLICATIONCOUNTERFROMORIGIN"')
    assert len(lines) == first.lines + other.lines + again.lines
    assert [r[3] for r in lines] == list(range(1, len(lines) + 1))
    assert {r[1] for r in lines if r[0].startswith(t.terminal)} <= {i for i, _ in items}
    for txn, net, _ in headers:
        assert Decimal(net) == sum(Decimal(r[2]) for r in lines if r[0] == txn)
    ext = select(conn, SQLITE, "ext", "CONTOSORETAILTRANSACTIONTABLE",
                 '"TRANSACTIONID", "REPLICATIONCOUNTERFROMORIGIN"')
    assert len(ext) == first.extensions + other.extensions + again.extensions > 0
    assert {e[0] for e in ext} <= {h[0] for h in headers}
    conn.close()


@pytest.mark.integration
def test_concurrent_sales_on_postgresql(postgres: str, sample: Topology) -> None:
    pg = get_dialect("postgresql")
    with pg.connect(postgres) as conn:
        create_channel_upload_tables(conn, pg, sample)

    def register(terminal: str, seed: int) -> None:
        with pg.connect(postgres) as own:
            write_sales(own, pg, 5637145326, "store-1001", terminal, 25, random.Random(seed), dataareaid="dert")

    threads = [threading.Thread(target=register, args=(f"store-1001-pos-0{k}", k)) for k in (1, 2, 3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    with pg.connect(postgres) as conn:
        headers = select(conn, pg, "ax", "RETAILTRANSACTIONTABLE", '"TRANSACTIONID", "REPLICATIONCOUNTERFROMORIGIN"')
        assert len(headers) == 75 and len({h[0] for h in headers}) == 75
        assert sorted(h[1] for h in headers) == list(range(1, 76))
        lines = select(conn, pg, "ax", "RETAILTRANSACTIONSALESTRANS", '"REPLICATIONCOUNTERFROMORIGIN"')
        assert len({r[0] for r in lines}) == len(lines) >= 75


def test_concurrent_sales_on_sqlite(sqlite: Path, sample: Topology) -> None:
    conn = SQLITE.connect(str(sqlite))
    create_channel_upload_tables(conn, SQLITE, sample)
    conn.close()

    def register(terminal: str, seed: int) -> None:
        own = SQLITE.connect(str(sqlite))
        write_sales(own, SQLITE, 5637144577, "store-0002", terminal, 25, random.Random(seed))
        own.close()

    threads = [threading.Thread(target=register, args=(f"store-0002-pos-0{k}", k)) for k in (1, 2, 3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    conn = SQLITE.connect(str(sqlite))
    headers = select(conn, SQLITE, "ax", "RETAILTRANSACTIONTABLE", '"TRANSACTIONID", "REPLICATIONCOUNTERFROMORIGIN"')
    assert len({h[0] for h in headers}) == 75
    assert [h[1] for h in headers] == list(range(1, 76))
    conn.close()
