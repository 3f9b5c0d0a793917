"""The transactional engine's guarantees against the real broker: key state (rows moving between
groups), deletes that survive real log compaction, no gap after a failed delivery."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import ConsumerGroupState
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

from cdx.kafka.config import client_config
from cdx.kafka.reading import read_to_end
from cdx.topology import load_topology
from tests.routing.helpers import (
    Change,
    HqWriter,
    Workload,
    _codec,
    expected,
    fingerprint,
    read_group,
    spawn_router,
    stop,
    topology_text,
    wait_routed,
    write_topology,
)

pytestmark = pytest.mark.integration

COMPACT_FAST = {"segment.ms": "300", "min.cleanable.dirty.ratio": "0.01"}  # delete.retention.ms: the default (1 day)


def set_configs(kafka: str, topic: str, configs: dict[str, str]) -> None:
    admin = AdminClient({"bootstrap.servers": kafka})
    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in configs.items()])
    for fut in admin.incremental_alter_configs([res]).values():
        fut.result(30)


def staff(sid: str, entity: str, name: str) -> Change:
    return Change("STAFF", "u", {"STAFFID": sid}, {"STAFFID": sid, "DATAAREAID": entity, "NAME": name})


def rows(topo: Any, group: str) -> dict[Any, Any]:
    """What a sink ends with: the last change per (table, key) after watermark de-duplication."""
    last: dict[Any, Any] = {}
    for c in read_group(topo, group).applied():
        last[(c.table, tuple(sorted(c.key.items())))] = c.row
    return {k: v for k, v in last.items() if v is not None}


def test_a_row_moving_to_another_legal_entity_leaves_its_old_group(tmp_path: Path, kafka: str) -> None:
    path, topo = write_topology(tmp_path, kafka)
    hq = HqWriter(topo)
    hq.write([Change("STAFF", "c", {"STAFFID": "S1"}, {"STAFFID": "S1", "DATAAREAID": "usrt", "NAME": "a"}),
              Change("STAFF", "c", {"STAFFID": "S2"}, {"STAFFID": "S2", "DATAAREAID": "frrt", "NAME": "b"})])
    proc = spawn_router(path, tmp_path, "router", "--key-store", "sqlite")
    try:
        wait_routed(topo, expected(topo), timeout=120)
        assert stop(proc) == 0  # the key state survives a restart (SQLite file + changelog)
        proc = spawn_router(path, tmp_path, "router", "--key-store", "sqlite")
        hq.write([staff("S1", "dert", "a2")])  # us loses S1; both (usrt, dert) keeps it
        hq.write([staff("S2", "frrt", "b2")])  # held by no group: no deletes
        wait_routed(topo, expected(topo), timeout=120)
        hq.write([staff("S1", "frrt", "a3")])  # both loses it too
        hq.write([staff("S2", "usrt", "b3")])  # into us and both
        want = expected(topo)
        got = wait_routed(topo, want, timeout=120)
    finally:
        assert stop(proc) == 0
    us, both = rows(topo, "us"), rows(topo, "both")
    assert set(us) == {("STAFF", (("STAFFID", "S2"),))} and us[("STAFF", (("STAFFID", "S2"),))]["NAME"] == "b3"
    assert set(both) == {("STAFF", (("STAFFID", "S2"),))}

    def ops(group: str, sid: str) -> list[str]:
        return [c.op for c in got[group].changes if c.key["STAFFID"] == sid]

    assert (ops("us", "S1"), ops("us", "S2")) == (["c", "d"], ["u"])
    assert (ops("both", "S1"), ops("both", "S2")) == (["c", "u", "d"], ["u"])
    for gt in got.values():
        assert gt.deletes_followed_by_tombstone
        fps = [fingerprint(c) for c in gt.changes]
        assert len(fps) == len(set(fps))


def _compacted_away(topo: Any, topic: str, hq: HqWriter, work: Workload, gone: Any) -> None:
    """Write filler changes (segments roll) until the log cleaner has removed every record ``gone`` matches."""
    codec = _codec(topo)
    cfg = client_config(topo.kafka.bootstrap_servers)
    deadline = time.monotonic() + 120
    while True:
        left = [m for m in read_to_end(cfg, topic)
                if m.value() is not None and gone(codec.decode_value(topic, m.value()))]
        if not left:
            return
        assert time.monotonic() < deadline, "the log cleaner did not compact the topic"
        hq.write([c for c in work.changes(30) if c.table != "STAFF"])
        time.sleep(0.5)


@pytest.mark.chaos  # waits for the log cleaner: ~40-70 s
def test_a_delete_compacted_away_while_the_router_was_stopped_still_reaches_the_groups(
        tmp_path: Path, kafka: str) -> None:
    path, topo = write_topology(tmp_path, kafka)
    hq = HqWriter(topo)
    work = Workload(3)
    items = hq.topic("ITEMS")
    set_configs(kafka, items, COMPACT_FAST)
    doomed = {"DATAAREAID": "usrt", "ITEMID": "DOOMED"}
    row = {**doomed, "NAME": "x", "PRICE": None, "QTY": 1, "HQONLY": "h"}
    hq.write([Change("ITEMS", "c", doomed, row), *work.changes(50)])
    proc = spawn_router(path, tmp_path)
    try:
        wait_routed(topo, expected(topo), timeout=120)
    finally:
        assert stop(proc) == 0
    hq.write([Change("ITEMS", "d", doomed, None)])
    _compacted_away(topo, items, hq, work, lambda env: (env["after"] or env["before"] or {}).get("ITEMID") == "DOOMED")
    proc = spawn_router(path, tmp_path)
    try:
        got = wait_routed(topo, expected(topo), timeout=120)
    finally:
        assert stop(proc) == 0
    assert ("ITEMS", (("DATAAREAID", "usrt"), ("ITEMID", "DOOMED"))) not in rows(topo, "us")
    lone = [c for c in got["us"].changes if c.key.get("ITEMID") == "DOOMED" and c.op == "d"]
    assert len(lone) == 1 and lone[0].position.topic == items  # the source tombstone's own position
    assert not [c for c in got["de"].changes if c.key.get("ITEMID") == "DOOMED"]


def test_a_failed_delivery_leaves_no_gap_and_no_resend(tmp_path: Path, kafka: str) -> None:
    """Defect (b): a batch of routed records fails (record too large for the group topic) while later
    ones would be written; the transaction aborts, nothing of it is visible, and once the topic
    takes the record the routing resumes: every record exactly once, in order."""
    path, topo = write_topology(tmp_path, kafka)
    us = topo.group_topic("us")
    hq = HqWriter(topo)
    work = Workload(9)
    big = {"DATAAREAID": "usrt", "ITEMID": "BIG"}
    hq.write(work.changes(200))
    proc = spawn_router(path, tmp_path)
    try:
        # the router raises the group topics' limit to kafka.max_message_bytes at start: lower it afterwards
        deadline = time.monotonic() + 90
        while not read_group(topo, "us").changes:
            assert time.monotonic() < deadline and proc.poll() is None, "the router routed nothing"
            time.sleep(0.5)
        set_configs(kafka, us, {"max.message.bytes": "4000"})
        log = tmp_path / "router.log"
        aborted = log.read_text(errors="replace").count("batch aborted")
        hq.write([Change("ITEMS", "c", big, {**big, "NAME": os.urandom(8000).hex(), "PRICE": None, "QTY": 1,
                                             "HQONLY": "h"})])
        hq.write(work.changes(200))
        # the transaction with BIG keeps failing and is aborted each time: wait for three aborts
        deadline = time.monotonic() + 90
        while log.read_text(errors="replace").count("batch aborted") < aborted + 3:
            assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, "the router did not abort the transaction with BIG three times"
            time.sleep(0.2)
        assert proc.poll() is None
        before = read_group(topo, "us")
        assert not [c for c in before.changes if c.key.get("ITEMID") == "BIG"]
        set_configs(kafka, us, {"max.message.bytes": "1000000"})
        want = expected(topo)
        got = wait_routed(topo, want, timeout=90)
    finally:
        assert stop(proc) == 0
    for g, gt in got.items():
        fps = [fingerprint(c) for c in gt.changes]
        assert len(fps) == len(set(fps)) and set(fps) == want[g], g
        assert [fingerprint(c) for c in gt.applied()] == fps, g  # a sink's watermark view skips nothing


def _stable_members(kafka: str, group: str, n: int, timeout: float = 60.0) -> None:
    admin = AdminClient({"bootstrap.servers": kafka})
    deadline = time.monotonic() + timeout
    while True:
        desc = admin.describe_consumer_groups([group])[group].result(30)
        if desc.state == ConsumerGroupState.STABLE and len(desc.members) == n and \
                all(m.assignment.topic_partitions for m in desc.members):
            return
        assert time.monotonic() < deadline, f"no stable {n}-member group: {desc.state}"
        time.sleep(0.5)


@pytest.mark.chaos  # two workers, three rebalances: ~50 s
def test_a_rolling_reload_across_two_workers_leaves_no_range_unrouted(tmp_path: Path, kafka: str) -> None:
    """Defect (f): worker A runs the new topology (group ``new``) while B still runs the old one, and the
    partitions move between them; once both run the new file, ``new`` has every record exactly once."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    path_a, topo = write_topology(tmp_path / "a", kafka)
    prefix = topo.kafka.topic_prefix
    path_b, _ = write_topology(tmp_path / "b", kafka, prefix)
    group = f"{prefix}-router"
    hq = HqWriter(topo)
    work = Workload(41)
    hq.write(work.changes(300))
    a = spawn_router(path_a, tmp_path, "a")
    b = spawn_router(path_b, tmp_path, "b")
    try:
        _stable_members(kafka, group, 2)
        wait_routed(topo, expected(topo), timeout=120)
        path_a.write_text(topology_text(kafka, prefix, tmp_path / "a", extra_group="new"))  # A first
        hq.write(work.changes(200))
        time.sleep(2)
        assert stop(b) == 0  # A takes every partition, with the new group
        hq.write(work.changes(200))
        time.sleep(2)
        b = spawn_router(path_b, tmp_path, "b")  # B is back, still on the old file: some partitions move to it
        _stable_members(kafka, group, 2)
        hq.write(work.changes(200))
        time.sleep(2)
        path_b.write_text(topology_text(kafka, prefix, tmp_path / "b", extra_group="new"))  # B catches up
        hq.write(work.changes(100))
        topo2 = load_topology(path_a)
        want = expected(topo2)
        got = wait_routed(topo2, want, timeout=120)
    finally:
        assert stop(a) == 0 and stop(b) == 0
    for g, gt in got.items():
        fps = [fingerprint(c) for c in gt.changes]
        assert len(fps) == len(set(fps)) and set(fps) == want[g], g
