"""Channel upload and HQ upload sink end to end (real broker, SQLite channels, PostgreSQL or SQLite HQ):
every row reaches HQ exactly once, records are keyed and ordered per table, sessions count them,
and both OverrideTarget modes of an extension table."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import pytest

from cdx.connectors.upload import sessions as hist
from cdx.dialects import connect, get_dialect
from cdx.topics import upload_topic
from tests.upload.helpers import (
    assert_channel_at_hq,
    channel_rows,
    create_databases,
    dead_letters,
    expected_rows,
    fresh_pg,
    hq_count,
    make_topology,
    sell,
    upload_records,
    wait_until,
)

pytestmark = pytest.mark.integration

@pytest.mark.parametrize("hq", ["postgresql", "sqlite"])
def test_every_row_reaches_hq_once(hq: str, tmp_path: Path, kafka: str, postgres_server: str, running) -> None:
    hq_dsn = fresh_pg(postgres_server, "flow") if hq == "postgresql" else f"sqlite:///{tmp_path}/hq.db"
    channels = ["s01", "s02", "s03"]
    topo = make_topology(tmp_path, kafka, hq_dsn, channels)
    create_databases(topo)
    for i, c in enumerate(channels):
        sell(topo, c, 20, seed=i)
    run = running(topo)
    writers = [threading.Thread(target=sell, args=(topo, c, 30, 10 + i)) for i, c in enumerate(channels)]
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    want = expected_rows(topo)
    wait_until(lambda: hq_count(topo) >= want, 90, "HQ to receive every row", check=run.check)
    run.stop()
    for c in channels:
        assert_channel_at_hq(topo, c)
        records = upload_records(topo, c)
        keys = [(k["table"], k["counter"]) for k, _, _ in records]
        assert len(keys) == len(set(keys)), "a row was published twice"
        rows = channel_rows(topo, c)
        assert len(keys) == len(rows["header"]) + len(rows["lines"])
        for table in {t for t, _ in keys}:
            counters = [n for t, n in keys if t == table]
            assert counters == sorted(counters), f"{table} not in counter order"
        env = records[0][1]
        assert env["op"] == "c" and env["source"]["name"] == c and env["source"]["db"] == c
        assert records[0][2]["cdx.subjob"] in (b"RetailTransactionTable", b"RetailTransactionSalesTrans")
    d = get_dialect(hq)
    conn = connect(hq, hq_dsn)
    totals = {s.channel: s for s in hist.summary(conn, d)}
    latest = hist.recent(conn, d, 5)
    conn.close()
    assert set(totals) == set(channels)
    assert sum(s.rows_inserted for s in totals.values()) == want
    assert all(s.failed == 0 and s.last_status == "Applied" for s in totals.values())
    assert latest and latest[0].job == "P-0001" and latest[0].topic == upload_topic(topo.kafka.topic_prefix,
                                                                                      latest[0].channel)
    assert not dead_letters(topo)


def test_extension_joined_row_without_extension_gets_hq_default(tmp_path: Path, kafka: str, postgres_server: str,
                                                               running) -> None:
    """OverrideTarget false: extension columns travel with the primary row; without an extension row
    the row still uploads and the HQ columns keep their defaults."""
    hq_dsn = fresh_pg(postgres_server, "extjoin")
    topo = make_topology(tmp_path, kafka, hq_dsn, ["e01"])
    create_databases(topo)
    with connect("postgresql", hq_dsn) as conn:
        conn.execute('ALTER TABLE dbo."RETAILTRANSACTIONTABLE" ALTER "CONTOSORETAILSEATNUMBER" SET DEFAULT -1')
        conn.execute('ALTER TABLE dbo."RETAILTRANSACTIONTABLE" ALTER "CONTOSORETAILSERVERSTAFFID" SET DEFAULT \'none\'')
        conn.commit()
    sell(topo, "e01", 40, seed=3)
    run = running(topo)
    want = expected_rows(topo)
    wait_until(lambda: hq_count(topo) >= want, 60, "HQ rows", check=run.check)
    run.stop()
    ch = channel_rows(topo, "e01")["header"]
    with connect("postgresql", hq_dsn) as conn:
        got = {r[0]: r[1:] for r in conn.execute(
            'SELECT "TRANSACTIONID", "CONTOSORETAILSEATNUMBER", "CONTOSORETAILSERVERSTAFFID"'
            ' FROM dbo."RETAILTRANSACTIONTABLE"').fetchall()}
    with_ext = [row for row in ch.values() if row[-2] is not None]
    without = [row for row in ch.values() if row[-2] is None]
    assert with_ext and without
    for row in with_ext:
        assert (str(got[row[1]][0]), got[row[1]][1]) == (row[-2], row[-1])
    for row in without:
        assert got[row[1]] == (-1, "none")
    headers = {k["counter"]: h for k, _, h in upload_records(topo, "e01") if k["table"] == "ax.RETAILTRANSACTIONTABLE"}
    assert Counter(h["cdx.extension"] for h in headers.values()) == {b"present": len(with_ext),
                                                                     b"absent": len(without)}


def test_extension_override_target_replaces_source(tmp_path: Path, kafka: str, postgres_server: str,
                                                   running) -> None:
    """OverrideTarget true: only the extension table is read (its own counter), the subjob's table is not."""
    hq_dsn = fresh_pg(postgres_server, "override")
    topo = make_topology(tmp_path, kafka, hq_dsn, ["o01"], override_target=True)
    create_databases(topo)
    with connect("postgresql", hq_dsn) as conn:  # columns the extension table does not have get defaults
        for col, default in (("TYPE", "0"), ("STAFF", "''"), ("CURRENCY", "''"), ("GROSSAMOUNT", "0"),
                             ("NETAMOUNT", "0"), ("TRANSDATE", "'1900-01-01'"), ("TRANSTIME", "0")):
            conn.execute(f'ALTER TABLE dbo."RETAILTRANSACTIONTABLE" ALTER "{col}" SET DEFAULT {default}')
        conn.commit()
    sell(topo, "o01", 40, seed=4)
    sqlite = get_dialect("sqlite")
    c = sqlite.connect(str(tmp_path / "o01.db"))
    ext = c.execute('SELECT "TRANSACTIONID", "CONTOSORETAILSEATNUMBER", "REPLICATIONCOUNTERFROMORIGIN"'
                    ' FROM "ext_CONTOSORETAILTRANSACTIONTABLE"').fetchall()
    lines = c.execute('SELECT COUNT(*) FROM "ax_RETAILTRANSACTIONSALESTRANS"').fetchone()[0]
    headers = c.execute('SELECT COUNT(*) FROM "ax_RETAILTRANSACTIONTABLE"').fetchone()[0]
    c.close()
    assert 0 < len(ext) < headers
    run = running(topo)
    wait_until(lambda: hq_count(topo) >= len(ext) + lines, 60, "HQ rows", check=run.check)
    run.stop()
    with connect("postgresql", hq_dsn) as conn:
        got = {r[0]: r[1:] for r in conn.execute(
            'SELECT "TRANSACTIONID", "CONTOSORETAILSEATNUMBER", "REPLICATIONCOUNTERFROMORIGIN", "TYPE"'
            ' FROM dbo."RETAILTRANSACTIONTABLE"').fetchall()}
    assert got == {t: (seat, counter, 0) for t, seat, counter in ext}
    tables = Counter(k["table"] for k, _, _ in upload_records(topo, "o01"))
    assert tables == {"ext.CONTOSORETAILTRANSACTIONTABLE": len(ext), "ax.RETAILTRANSACTIONSALESTRANS": lines}
