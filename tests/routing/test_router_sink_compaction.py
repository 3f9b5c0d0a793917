"""A real sink stopped while its group topic is compacted: the delete record is gone, the routed
tombstone (with its source position in headers) is what the sink finds, and it deletes the row."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cdx.kafka.admin import COMPACTED, TopicSpec, ensure_topics
from cdx.kafka.config import client_config
from cdx.topology import load_topology
from connectors.sink.init import init_databases
from tests.routing.helpers import (
    Change,
    HqWriter,
    Workload,
    expected,
    read_group,
    spawn_router,
    stop,
    topology_text,
    wait_routed,
)

pytestmark = [pytest.mark.integration, pytest.mark.chaos]  # waits for the log cleaner: ~50 s


def sink(path: Path, tmp: Path) -> subprocess.Popen:
    log = open(tmp / "sink.log", "ab")  # noqa: SIM115
    return subprocess.Popen([sys.executable, "-m", "cdx.cli.main", "sink", "--topology", str(path), "--channel", "c1"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def items(db: Path) -> set[str]:
    conn = sqlite3.connect(db)
    try:
        return {r[0] for r in conn.execute("SELECT ITEMID FROM ax_ITEMS")}
    except sqlite3.OperationalError:
        return set()
    finally:
        conn.close()


def wait(check: object, what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.3)


def test_a_sink_stopped_across_group_topic_compaction_still_deletes_the_row(tmp_path: Path, kafka: str) -> None:
    db = tmp_path / "c1.db"
    text = topology_text(kafka, f"rs{int(time.time() * 1000) % 10**8}", tmp_path).replace(
        "  - {id: us, legal_entities: [usrt]}",
        f'  - {{id: us, legal_entities: [usrt], channels: [{{id: c1, database: {{dialect: sqlite,'
        f' dsn: "sqlite:///{db}"}}, attributes: {{recid: 1}}}}]}}')
    path = tmp_path / "topology.yaml"
    path.write_text(text)
    topo = load_topology(path)
    us = topo.group_topic("us")
    ensure_topics(client_config(kafka), [TopicSpec(us, topo.kafka.default_partitions, 1,
                                                   {**COMPACTED, "segment.ms": "300",
                                                    "min.cleanable.dirty.ratio": "0.01"})])
    hq = HqWriter(topo)
    work = Workload(5)
    doomed = {"DATAAREAID": "usrt", "ITEMID": "DOOMED"}
    hq.write([Change("ITEMS", "c", doomed, {**doomed, "NAME": "x", "PRICE": None, "QTY": 1, "HQONLY": "h"}),
              *work.changes(40)])
    router = spawn_router(path, tmp_path)
    try:
        wait_routed(topo, expected(topo), timeout=120)
        init_databases(topo)
        proc = sink(path, tmp_path)
        try:
            wait(lambda: "DOOMED" in items(db), "the sink did not apply the insert")
        finally:
            assert stop(proc) == 0
        hq.write([Change("ITEMS", "d", doomed, None)])
        deadline = time.monotonic() + 120
        while any(c.key.get("ITEMID") == "DOOMED" for c in read_group(topo, "us").changes if c.op != "d"
                  or c.version >= 0):  # until only the tombstone is left of DOOMED
            assert time.monotonic() < deadline, "the log cleaner did not compact the group topic"
            hq.write([c for c in work.changes(30) if c.table == "ITEMS"])  # segments roll
            time.sleep(0.5)
        assert [c.op for c in read_group(topo, "us").changes if c.key.get("ITEMID") == "DOOMED"] == ["d"]
        proc = sink(path, tmp_path)
        try:
            wait(lambda: "DOOMED" not in items(db), "the sink kept a row whose delete was compacted away")
        finally:
            assert stop(proc) == 0
    finally:
        assert stop(router) == 0
