"""HQ trouble: a batch the HQ database cannot take (lock held past the statement timeout) is rolled
back, recorded as a ``Failed`` upload session and retried; an unreachable HQ is waited for. Every
row still arrives once, and ``cdx status`` shows the sessions."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cdx.connectors.upload import sessions as hist
from cdx.dialects import connect, get_dialect
from tests.upload.helpers import (
    TcpProxy,
    assert_channel_at_hq,
    create_databases,
    expected_rows,
    fresh_pg,
    hq_count,
    make_topology,
    sell,
    topology_path,
    wait_until,
)

pytestmark = pytest.mark.integration


def _failed_sessions(hq_dsn: str) -> int:
    conn = connect("postgresql", hq_dsn)
    try:
        return sum(1 for s in hist.recent(conn, get_dialect("postgresql"), 100) if s.status == "Failed")
    finally:
        conn.close()


def test_failed_batches_are_recorded_and_retried(tmp_path: Path, kafka: str, postgres_server: str, running) -> None:
    hq_dsn = fresh_pg(postgres_server, "outage")
    port = int(hq_dsn.rsplit(":", 1)[1].split("/")[0])
    proxy = TcpProxy(("127.0.0.1", port))
    via_proxy = proxy.dsn(hq_dsn) + "?options=-c%20statement_timeout%3D1000"
    topo = make_topology(tmp_path, kafka, via_proxy, ["h01", "h02"])
    create_databases(topo)
    sell(topo, "h01", 5, seed=1)
    run = running(topo)
    wait_until(lambda: hq_count(topo) >= expected_rows(topo), 60, "first rows", check=run.check)

    # 1. a lock held longer than the sink's statement timeout: the batch fails, then succeeds
    locker = connect("postgresql", hq_dsn)
    locker.execute('LOCK TABLE dbo."RETAILTRANSACTIONSALESTRANS" IN ACCESS EXCLUSIVE MODE')
    sell(topo, "h01", 5, seed=2)
    wait_until(lambda: _failed_sessions(hq_dsn) >= 1, 60, "a Failed upload session (statement timeout)",
               check=run.check)  # held until the sink's batch has hit the statement timeout
    locker.rollback()
    locker.close()
    wait_until(lambda: hq_count(topo) >= expected_rows(topo), 60, "rows after the lock", check=run.check)

    # 2. HQ unreachable for a while
    proxy.down()
    sell(topo, "h02", 5, seed=3)
    time.sleep(3.0)
    proxy.up()
    wait_until(lambda: hq_count(topo) >= expected_rows(topo), 60, "rows after the outage", check=run.check)
    time.sleep(0.5)
    run.stop()

    assert hq_count(topo) == expected_rows(topo)
    for c in ("h01", "h02"):
        assert_channel_at_hq(topo, c)
    d = get_dialect("postgresql")
    conn = connect("postgresql", hq_dsn)
    totals = {s.channel: s for s in hist.summary(conn, d)}
    failed = [s for s in hist.recent(conn, d, 100) if s.status == "Failed"]
    conn.close()
    assert totals["h01"].failed >= 1 and failed and "statement timeout" in (failed[0].error or "")
    assert sum(s.rows_inserted for s in totals.values()) == expected_rows(topo)
    assert sum(s.rows_duplicate for s in totals.values()) == 0

    out = subprocess.run([sys.executable, "-m", "cdx.cli.main", "hq", "upload-status",
                          "--topology", str(topology_path(topo)), "--sessions", "200"],
                         capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "200"})
    assert out.returncode == 0, out.stderr
    assert "h01" in out.stdout and "Failed" in out.stdout and "statement timeout" in out.stdout
    assert "ax.RETAILTRANSACTIONTABLE" in out.stdout and "ax.RETAILTRANSACTIONSALESTRANS" in out.stdout
    proxy.down()
