"""``offline: false`` end to end (real capture, router, sinks and ``cdx channel offline-sync``): the download
subjob InventTable with ``offline: false`` reaches the channel database but not its offline register (whose
sink still consumes them, counted as filtered); the upload subjob of the sales lines with
``offline: false`` is not synced from the register into the channel, while the headers are."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdx.dialects import connect, get_dialect
from tests.ops.helpers import HqWriter, cdx, channel_items, hq_items, ops_topology, prepare, roles, start_roles, status
from tests.pipeline.helpers import wait_for
from tests.upload.helpers import sell

pytestmark = [pytest.mark.integration, pytest.mark.ops_long]


def _count(topo, owner: str, schema: str, table: str, terminal: str) -> int:  # type: ignore[no-untyped-def]
    info = next(i for i in topo.databases() if i.owner_id == owner)
    d = get_dialect(info.database.dialect.value)
    conn = connect(info.database.dialect.value, info.database.dsn)
    try:
        if not d.table_exists(conn, schema, table):
            return 0
        cur = conn.cursor()
        cur.execute(f"SELECT COUNT(*) FROM {d.qualified(schema, table)} WHERE {d.quote_ident('TERMINAL')} ="
                    f" {d.placeholder}", (terminal,))
        return int(cur.fetchone()[0])
    finally:
        conn.rollback()
        conn.close()


def test_offline_false_leaves_subjobs_out_of_the_register(tmp_path: Path, kafka: str) -> None:
    topo = ops_topology(tmp_path, kafka, f"sqlite:///{tmp_path}/hq.db", registers=["r1"], item_offline=False,
                        lines_offline=False)
    prepare(topo)
    group = roles(tmp_path, topo)
    HqWriter(topo).write(12)
    sell(topo, "r1", 5, seed=3)
    try:
        cdx(group, "hq", "enable-tracking")
        start_roles(group, "capture", "router", "sink")
        group.start("offline-sync", ["channel", "offline-sync", "--poll-interval", "0.2"])
        wait_for(lambda: None if channel_items(topo) == hq_items(topo) and channel_items(topo) else "items not in",
                 group, 180, "items in the channel")
        wait_for(lambda: None if _count(topo, "s1", "ax", "RETAILTRANSACTIONTABLE", "r1") == 5 else "headers",
                 group, 120, "the register's headers in the channel")
        wait_for(lambda: None if status(group, "r1")["stored_offsets"] == status(group, "s1")["stored_offsets"]
                 else "register behind", group, 120, "the register's sink consumed what the channel's did")
        assert channel_items(topo, "r1") == {}
        assert _count(topo, "r1", "ax", "RETAILTRANSACTIONSALESTRANS", "r1") > 0
        assert _count(topo, "s1", "ax", "RETAILTRANSACTIONSALESTRANS", "r1") == 0
    finally:
        group.stop_all()
