"""A real sink stopped while its group topic is compacted: the delete record is gone, the routed
tombstone (with its source position in headers) is what the sink finds, and it deletes the row."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cdx.connectors.sink.init import init_databases
from cdx.kafka.admin import COMPACTED, TopicSpec, ensure_topics
from cdx.kafka.config import client_config
from cdx.topology import load_topology
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


def test_rows_moving_out_of_a_group_or_a_channel_filter_leave_the_channel(tmp_path: Path, kafka: str) -> None:
    """Key state end to end: a STAFF row whose DATAAREAID moves away from the group is deleted from the
    channel (the router sends the group a delete); an ITEMS row whose QTY leaves the channel's filter
    is deleted by the sink, and comes back when it matches again."""
    db = tmp_path / "c1.db"
    text = topology_text(kafka, f"rf{int(time.time() * 1000) % 10**8}", tmp_path).replace(
        "  - {id: us, legal_entities: [usrt]}",
        f'  - {{id: us, legal_entities: [usrt], channels: [{{id: c1, database: {{dialect: sqlite,'
        f' dsn: "sqlite:///{db}"}}, attributes: {{recid: 1}}}}]}}').replace(
        "    fields: [ITEMID, {name: NAME, to_name: ITEMNAME}, PRICE, QTY]\n",
        "    fields: [ITEMID, {name: NAME, to_name: ITEMNAME}, PRICE, QTY]\n"
        "    channel_filter: {column: QTY, attribute: recid}\n")
    path = tmp_path / "topology.yaml"
    path.write_text(text)
    topo = load_topology(path)
    hq = HqWriter(topo)
    item = {"DATAAREAID": "usrt", "ITEMID": "I1"}

    def item_row(qty: int) -> dict[str, object]:
        return {**item, "NAME": f"q{qty}", "PRICE": None, "QTY": qty, "HQONLY": "h"}

    def staff_row(entity: str) -> dict[str, object]:
        return {"STAFFID": "S1", "DATAAREAID": entity, "NAME": entity}

    def rows(table: str, column: str) -> set[str]:
        conn = sqlite3.connect(db)
        try:
            return {r[0] for r in conn.execute(f"SELECT {column} FROM ax_{table}")}
        except sqlite3.OperationalError:
            return set()
        finally:
            conn.close()

    hq.write([Change("ITEMS", "c", item, item_row(1)), Change("STAFF", "c", {"STAFFID": "S1"}, staff_row("usrt"))])
    router = spawn_router(path, tmp_path)
    proc = None
    try:
        wait_routed(topo, expected(topo), timeout=120)
        init_databases(topo)
        proc = sink(path, tmp_path)
        wait(lambda: rows("ITEMS", "ITEMID") == {"I1"} and rows("STAFF", "STAFFID") == {"S1"}, "first rows")
        hq.write([Change("ITEMS", "u", item, item_row(2)), Change("STAFF", "u", {"STAFFID": "S1"}, staff_row("dert"))])
        wait(lambda: not rows("ITEMS", "ITEMID") and not rows("STAFF", "STAFFID"), "rows that moved away stay")
        hq.write([Change("ITEMS", "u", item, item_row(1)), Change("STAFF", "u", {"STAFFID": "S1"}, staff_row("usrt"))])
        wait(lambda: rows("ITEMS", "ITEMID") == {"I1"} and rows("STAFF", "STAFFID") == {"S1"}, "rows back")
    finally:
        if proc is not None:
            assert stop(proc) == 0
        assert stop(router) == 0
