"""Offline registers and unreachable channel databases.

Channel ``r01`` has a PostgreSQL database reached through a proxy we can cut, and an offline
register ``r01-pos-01`` (SQLite). While ``r01``'s database is unreachable the register sells into
its offline database, ``r02`` keeps uploading (an unreachable channel delays only itself) and the
offline sync (a CLI process, SIGKILLed twice) waits. When the database returns, the register's
transactions reach it exactly once (merged by transaction id; one the channel already has with
other content is not overwritten but dead-lettered; one it has identically is skipped) and from
there HQ, like every other row."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from cdx.connectors.upload.sink import SinkOptions, UploadSink
from cdx.connectors.upload.uploader import UploadConnector, UploadOptions
from cdx.demo.pos import write_sales
from cdx.demo.retail_schema import CHANNEL_UPLOAD_TABLES, insert_sql
from cdx.dialects import connect, get_dialect
from tests.upload.helpers import (
    RECIDS,
    Background,
    Proc,
    TcpProxy,
    assert_channel_at_hq,
    create_databases,
    dead_letters,
    fresh_pg,
    hq_rows,
    make_topology,
    sell,
    topology_path,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REGISTER = "r01-pos-01"
TABLES = [("ax", "RETAILTRANSACTIONTABLE"), ("ax", "RETAILTRANSACTIONSALESTRANS"),
          ("ext", "CONTOSORETAILTRANSACTIONTABLE")]


def copy_transaction(src, src_d, dst, dst_d, txn: str) -> None:
    """Copy one transaction's rows (every table, every column but the counter) from ``src`` to ``dst``."""
    for schema, table in TABLES:
        tdef = CHANNEL_UPLOAD_TABLES[table]
        cols = [c for c in tdef.column_names if c != tdef.identity]
        cur = src.cursor()
        cur.execute(f"SELECT {src_d.columns_sql(cols)} FROM {src_d.qualified(schema, table)}"
                    f' WHERE "TRANSACTIONID" = {src_d.placeholder}', (txn,))
        rows = cur.fetchall()
        infos = {c.name: c for c in src_d.introspect_columns(src, schema, table)}
        with dst_d.transaction(dst):
            for r in rows:
                values = [dst_d.encode(src_d.decode(infos[c], v)) if v is not None else None
                          for c, v in zip(cols, r, strict=True)]
                dst.execute(insert_sql(dst_d, schema, tdef, cols), values)
    src.rollback()


def hq_transactions(topo, terminal: str) -> list[str]:
    rows = hq_rows(topo, "r01")["header"]
    return sorted(k[1] for k in rows if k[3] == terminal)


def test_offline_register_reaches_hq_exactly_once(tmp_path: Path, kafka: str, postgres_server: str) -> None:
    channel_dsn = fresh_pg(postgres_server, "offch")
    proxy = TcpProxy(("127.0.0.1", int(channel_dsn.rsplit(":", 1)[1].split("/")[0])))
    hq_dsn = fresh_pg(postgres_server, "offhq")
    topo = make_topology(tmp_path, kafka, hq_dsn, ["r01", "r02"], registers={"r01": [REGISTER]},
                         channel_dsns={"r01": proxy.dsn(channel_dsn)})
    create_databases(topo)
    pg, sqlite = get_dialect("postgresql"), get_dialect("sqlite")
    upload = UploadConnector(topo, options=UploadOptions(poll_interval=0.05, gap_grace=0.5, max_backoff=1.0))
    upload.setup()
    sink = UploadSink(topo, SinkOptions(poll_timeout=0.1))
    sink.setup()
    threads = [Background(upload.run, "upload"), Background(sink.run, "sink")]
    sync = Proc(["channel", "offline-sync", "--topology", str(topology_path(topo)), "--poll-interval", "0.1",
                 "--max-backoff", "1"], tmp_path / "offline.log").start()
    try:
        # online: the register and another terminal sell straight into the channel database
        online = sell(topo, "r01", 3, seed=1, terminal=REGISTER) + sell(topo, "r01", 5, seed=2)
        sell(topo, "r02", 5, seed=3)
        wait_until(lambda: len(hq_rows(topo, "r01")["header"]) == 8 and len(hq_rows(topo, "r02")["header"]) == 5,
                   60, "the online sales at HQ")

        proxy.down()  # r01's database is unreachable from now on
        offline = connect("sqlite", f"sqlite:///{tmp_path}/{REGISTER}.db")
        # two transactions whose ids the channel already has, with other content: conflicts
        write_sales(offline, sqlite, RECIDS, "r01", REGISTER, 2, random.Random(99))
        # one the channel already has, identical: a duplicate
        channel = connect("postgresql", channel_dsn)
        copy_transaction(channel, pg, offline, sqlite, online[2])
        sync.kill()
        sync.start()
        new = write_sales(offline, sqlite, RECIDS, "r01", REGISTER, 10, random.Random(5)).transaction_ids
        r02_more = sell(topo, "r02", 6, seed=4)
        wait_until(lambda: len(hq_rows(topo, "r02")["header"]) == 11, 60, "r02's sales while r01 is unreachable")
        assert not set(new) & set(hq_transactions(topo, REGISTER))
        assert r02_more[-1] in {k[1] for k in hq_rows(topo, "r02")["header"]}
        sync.check()

        proxy.up()
        new += write_sales(offline, sqlite, RECIDS, "r01", REGISTER, 5, random.Random(6)).transaction_ids
        wait_until(lambda: len(hq_transactions(topo, REGISTER)) >= 3 + len(new), 90,
                   "the offline sales at HQ", check=sync.check)
        sync.kill()  # and once more after the backlog: nothing is copied twice
        sync.start()
        new += write_sales(offline, sqlite, RECIDS, "r01", REGISTER, 4, random.Random(7)).transaction_ids
        wait_until(lambda: len(hq_transactions(topo, REGISTER)) >= 3 + len(new), 60, "the last offline sales",
                   check=sync.check)
        offline.close()
    finally:
        assert sync.stop() == 0
        upload.stop()
        sink.stop()
        for t in threads:
            t.join(60)

    assert hq_transactions(topo, REGISTER) == sorted(online[:3] + new)
    for c in ("r01", "r02"):
        assert_channel_at_hq(topo, c)  # HQ holds exactly each channel's rows, once
    # the conflicting transactions kept the channel's version
    channel = connect("postgresql", channel_dsn)
    staff = dict(channel.execute('SELECT "TRANSACTIONID", "GROSSAMOUNT" FROM ax."RETAILTRANSACTIONTABLE"'
                                 ' WHERE "TERMINAL" = %s', (REGISTER,)).fetchall())
    offline = connect("sqlite", f"sqlite:///{tmp_path}/{REGISTER}.db")
    theirs = dict(offline.execute('SELECT "TRANSACTIONID", "GROSSAMOUNT" FROM "ax_RETAILTRANSACTIONTABLE"').fetchall())
    offline.close()
    channel.close()
    conflicts = online[:2]
    assert all(str(staff[t]) != str(theirs[t]) for t in conflicts)
    letters = [x for x in dead_letters(topo) if x["component"] == "offline"]
    assert sorted(x["extra"]["row"]["_transaction"]["TRANSACTIONID"] for x in letters) == sorted(conflicts)
    assert all(x["channel"] == "r01" and "different transaction" in x["error"] for x in letters)
    proxy.down()
