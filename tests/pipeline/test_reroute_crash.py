"""A re-route after a topology change survives SIGKILL: the router is killed in the middle of re-routing a
table of 20,000 rows (twice) and the sink once, while HQ keeps changing; the re-route resumes where its last
transaction left it and every channel ends equal to HQ's scoped view. Real capture, router, sink, broker; SQLite."""

from __future__ import annotations

import os
import signal
import time
import uuid
from decimal import Decimal
from pathlib import Path

import pytest

from cdx.topology import load_topology
from cdx.verify import verify_channel
from tests.pipeline.helpers import Databases, cli, database, pipeline, tail, wait_for
from tests.pipeline.test_topology_changes import ITEMS, TOPOLOGY, V1, V2, Writer

pytestmark = [pytest.mark.integration, pytest.mark.rollout_long]

ROWS = 20_000


def _kill(group, name: str) -> None:  # type: ignore[no-untyped-def]
    role = group.roles.pop(name)
    os.killpg(role.proc.pid, signal.SIGKILL)
    role.proc.wait()


def _wait_log(path: Path, text: str, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text(errors="replace").count(text) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not logged {count} times in {timeout}s: {tail(path)}")


def test_reroute_resumes_after_sigkill(tmp_path: Path, kafka: str) -> None:
    dsns = {n: database("sqlite", tmp_path, n, None) for n in ("hq", "c1", "c2")}
    path = tmp_path / "topology.yaml"
    base = {"bootstrap": kafka, "prefix": f"rrk{uuid.uuid4().hex[:8]}", "dialect": "sqlite", **dsns}
    path.write_text(TOPOLOGY.format(**base, **V1).replace("default_partitions: 2", "default_partitions: 1"))
    dbs = Databases("sqlite")
    d = dbs.dialect
    hq = dbs.conn(dsns["hq"])
    with d.transaction(hq):
        d.ensure_schema(hq, "dbo")
        d.create_table(hq, "dbo", "ITEMS", ITEMS, ["DATAAREAID", "ITEMID"])
        d.create_table(hq, "dbo", "TERMS", [ITEMS[1]], ["ITEMID"])
        hq.executemany(f"INSERT INTO {d.qualified('dbo', 'ITEMS')} VALUES (?, ?, ?, ?, ?)",
                       [(("usrt", "frrt")[i % 2], f"I{i:06d}", f"n{i}", str(Decimal(i) / 4), f"c{i % 50}")
                        for i in range(ROWS)])
    group = pipeline(tmp_path, path)
    writer = Writer("sqlite", dsns["hq"], d.qualified("dbo", "ITEMS"))
    router = ["route", "--datadir", str(tmp_path / "router")]  # a restart fences the killed worker at once

    def converged() -> str | None:
        topo = load_topology(path)
        for owner in ("c1", "c2"):
            report = verify_channel(hq, d, dbs.conn(dsns[owner]), d, topo, owner)
            if not report.ok:
                return f"{owner}: {report.summary()[:600]}"
        return None

    log = tmp_path / "logs" / "router.log"
    try:
        cli(group, "hq", "enable-tracking")
        for name, args in (("capture", ["capture"]), ("router", router), ("sink", ["sink"])):
            group.start(name, args)
        writer.start()
        writer.pause()
        wait_for(converged, group, 300, "v1 routed")
        writer.resume()
        path.write_text(TOPOLOGY.format(**base, **V2).replace("default_partitions: 2", "default_partitions: 1"))
        for kills in (1, 2):
            _wait_log(log, "router: re-routing", 2 * kills - 1, 120)
            # some re-route transactions (2,000 records each) committed, others not yet: the whole re-route
            # takes about a second on an idle machine since reading a topic no longer waits 500 ms for a leader
            time.sleep(0.15 + 0.25 * kills)
            _kill(group, "router")
            if kills == 1:
                _kill(group, "sink")
                group.start("sink", ["sink"])
            group.start("router", router)
        writer.stop_event.set()
        writer.join(30)
        assert writer.error is None, writer.error
        wait_for(converged, group, 300, "re-route finished after the kills")
    finally:
        writer.stop_event.set()
        group.stop_all()
    text = log.read_text(errors="replace")
    assert "a re-route was under way" in text, tail(log, 60)  # resumed, not started over
    dbs.close()
