"""The routing conformance suite, run against both engines (``--engine transactional`` and ``faust``):
`cdx route` as a subprocess, table topics written as capture writes them (transactions, one
aborted), group topics read back and checked. The transactional engine must deliver each routed
record exactly once (read_committed); faust at least once, exact after the sinks' source-position
de-duplication (``GroupTopic.applied``)."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import ConsumerGroupState, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from cdx.kafka.config import client_config
from cdx.kafka.reading import high_watermarks, read_to_end
from cdx.stage.letters import parse_letter
from cdx.topics import dlq_topic
from cdx.topology import load_topology
from tests.routing.helpers import (
    ENGINES,
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

pytestmark = [pytest.mark.integration, pytest.mark.parametrize("engine", ENGINES)]


def source_counts(topo: Any, table: str) -> Counter[tuple[str, Any]]:
    """(op, DATAAREAID) counts of a table topic, read without cdx.streams.routing."""
    codec = _codec(topo)
    topic = f"{topo.kafka.topic_prefix}.hq.dbo.{table}"
    out: Counter[tuple[str, Any]] = Counter()
    for m in read_to_end(client_config(topo.kafka.bootstrap_servers), topic):
        if m.value() is None:
            continue
        try:
            env = codec.decode_value(topic, m.value()) or {}
        except Exception:
            continue
        row = env["after"] or env["before"]
        out[(env["op"], row.get("DATAAREAID"))] += 1
    return out


def test_mixed_workload_reaches_the_right_groups_with_the_right_fields(tmp_path: Path, kafka: str, engine: str) -> None:
    path, topo = write_topology(tmp_path, kafka)
    hq = HqWriter(topo)
    work = Workload(11)
    hq.write(work.changes(300))
    hq.write(work.changes(100), abort=True)  # must never be routed (read_committed)
    proc = spawn_router(path, tmp_path, engine=engine)
    try:
        hq.write(work.changes(300))  # while the router runs
        items = hq.topic("ITEMS")
        hq.producer.begin_transaction()
        hq.producer.produce(items, key=b"junk", value=b"not avro")
        hq.producer.commit_transaction(30)
        want = expected(topo, engine=engine)
        got = wait_routed(topo, want)
    finally:
        assert stop(proc) == 0  # SIGTERM: clean stop
    for g, gt in got.items():
        fps = [fingerprint(c) for c in gt.changes]
        assert len(fps) == len(set(fps)) and set(fps) == want[g], g  # no crash here, so exactly once
        assert gt.deletes_followed_by_tombstone and gt.tombstones == sum(c.op == "d" for c in gt.changes)

    # the rules, checked against the table topics directly
    by = {g: Counter((c.table, c.op, (c.row or c.key).get("DATAAREAID")) for c in gt.changes)
          for g, gt in got.items()}
    assert {t for t, _, _ in by["us"]} == {"ITEMS", "ECORESPRODUCT", "STAFF"}
    assert {t for t, _, _ in by["de"]} == {"ITEMS", "ECORESPRODUCT"}
    assert {t for t, _, _ in by["both"]} == {"STAFF"}
    src_items = source_counts(topo, "ITEMS")
    for g, entity in (("us", "usrt"), ("de", "dert")):
        assert {(op, e): n for (t, op, e), n in by[g].items() if t == "ITEMS"} == \
            {(op, e): n for (op, e), n in src_items.items() if e == entity}
    src_products = sum(source_counts(topo, "PRODUCTS").values())
    assert sum(n for (t, _, _), n in by["us"].items() if t == "ECORESPRODUCT") == src_products
    assert sum(n for (t, _, _), n in by["de"].items() if t == "ECORESPRODUCT") == src_products
    staff = source_counts(topo, "STAFF")
    deletes = sum(n for (op, _), n in staff.items() if op == "d")  # DATAAREAID not in the key
    for g, entities in (("us", {"usrt"}), ("both", {"usrt", "dert"})):
        assert sum(n for (op, e), n in staff.items() if op != "d" and e in entities) == \
            sum(n for (t, op, _), n in by[g].items() if t == "STAFF" and op != "d")
        got_deletes = sum(n for (t, op, _), n in by[g].items() if t == "STAFF" and op == "d")
        # faust: every group (it cannot tell whose row it was); transactional: the groups holding the row
        assert got_deletes == deletes if engine == "faust" else got_deletes < deletes
    columns = {c.table: set((c.row or {}).keys()) for gt in got.values() for c in gt.changes if c.row}
    assert columns == {"ITEMS": {"DATAAREAID", "ITEMID", "ITEMNAME", "PRICE", "QTY"},
                       "ECORESPRODUCT": {"RECID", "SEARCHNAME"}, "STAFF": {"STAFFID", "DATAAREAID", "NAME"}}
    assert all(c.schema == "ax" for gt in got.values() for c in gt.changes)

    # topics: compacted, partitions from the topology; the undecodable record is dead-lettered
    admin = AdminClient({"bootstrap.servers": kafka})
    for g in got:
        res = ConfigResource(ResourceType.TOPIC, topo.group_topic(g))
        cfg = admin.describe_configs([res])[res].result(30)
        assert cfg["cleanup.policy"].value == "compact"
        assert len(high_watermarks(client_config(kafka), topo.group_topic(g))) == 3
    dead = list(read_to_end(client_config(kafka), dlq_topic(topo.kafka.topic_prefix)))
    assert len(dead) == 1 and dead[0].key() == items.encode()
    headers = dict(dead[0].headers() or [])
    assert headers["cdx.source.topic"] == items.encode() and headers["cdx.component"] == b"router"
    assert headers["cdx.error"] and headers["cdx.letter.version"] == b"1"
    letter = parse_letter(dead[0].key(), dead[0].value(), dead[0].headers())
    assert letter.component == "router" and letter.record is not None and letter.record.key == b"junk"
    assert letter.source is not None and letter.source.topic == items


def _group_total(topo: Any) -> int:
    cfg = client_config(topo.kafka.bootstrap_servers)
    try:
        return sum(sum(high_watermarks(cfg, topo.group_topic(g.id)).values()) for g in topo.channel_data_groups)
    except KafkaException:  # a group topic the router has just created
        return 0


@pytest.mark.slow
def test_sigkill_mid_stream_loses_nothing(tmp_path: Path, kafka: str, engine: str) -> None:
    path, topo = write_topology(tmp_path, kafka)
    hq = HqWriter(topo)
    work = Workload(5)
    done = threading.Event()
    killed = threading.Event()  # the sixth kill happened

    def writer() -> None:
        """Write until the sixth kill has happened (every kill falls mid-stream), then two more batches
        while no router runs; at most 100 batches (~30 s, a slow machine's kills may take longer)."""
        after = 0
        for _ in range(100):
            hq.write(work.changes(100))
            after += killed.is_set()
            if after > 2:
                break
            time.sleep(0.3)
        done.set()

    rng = random.Random(3)
    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    kills = 0
    while kills < 6:
        before = _group_total(topo)
        proc = spawn_router(path, tmp_path, "router", "--instance-id", "w1", engine=engine)
        deadline = time.monotonic() + 60
        while _group_total(topo) <= before and not done.is_set() and time.monotonic() < deadline:
            time.sleep(0.1)  # wait until this run routes (once the writer is done there may be nothing left)
        time.sleep(rng.uniform(0.1, 1.0))
        assert proc.poll() is None, "router died on its own"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        kills += 1
    killed.set()
    thread.join(120)
    assert done.is_set()
    proc = spawn_router(path, tmp_path, "router", "--instance-id", "w1", engine=engine)
    try:
        want = expected(topo, engine=engine)
        got = wait_routed(topo, want, timeout=120)
    finally:
        assert stop(proc) == 0
    resent = 0
    for g, gt in got.items():
        fps = [fingerprint(c) for c in gt.changes]
        assert set(fps) == want[g], g  # everything at least once, nothing else
        if engine == "transactional":
            assert len(fps) == len(set(fps)), g  # exactly once, to read_committed readers
        applied = [fingerprint(c) for c in gt.applied()]  # what a sink keeps after watermark de-duplication
        assert len(applied) == len(set(applied)) and set(applied) == want[g], g
        resent += len(fps) - len(set(fps))
    print(f"{kills} SIGKILLs; {sum(len(w) for w in want.values())} routed records, {resent} re-sent")


def test_topology_reload_adds_a_group_and_a_table(tmp_path: Path, kafka: str, engine: str) -> None:
    path, topo = write_topology(tmp_path, kafka)
    prefix = topo.kafka.topic_prefix
    hq = HqWriter(topo)
    work = Workload(21)
    hq.write(work.changes(400))
    proc = spawn_router(path, tmp_path, "router", "--reload-interval", "3600", engine=engine)  # SIGHUP only
    try:
        wait_routed(topo, expected(topo, engine=engine))

        def live() -> None:
            for _ in range(20):
                hq.write(work.changes(50))
                time.sleep(0.05)

        writing = threading.Thread(target=live)
        writing.start()
        time.sleep(0.3)
        path.write_text(topology_text(kafka, prefix, tmp_path, extra_group="new"))
        os.kill(proc.pid, signal.SIGHUP)
        writing.join(60)
        topo2 = load_topology(path)
        want = expected(topo2, engine=engine)
        got = wait_routed(topo2, want)
        for g in ("us", "de", "both"):  # existing groups: nothing lost, nothing twice
            fps = [fingerprint(c) for c in got[g].changes]
            assert len(fps) == len(set(fps)) and set(fps) == want[g], g
        new = got["new"]  # bootstrapped from the beginning of ITEMS and PRODUCTS, then live
        assert {fingerprint(c) for c in new.applied()} == want["new"] and len(new.applied()) == len(want["new"])
        if engine == "transactional":
            assert len(new.changes) == len(want["new"])
        assert {c.table for c in new.changes} == {"ITEMS", "ECORESPRODUCT"}
        assert proc.poll() is None

        # a new subjob on a table the worker does not read yet: it restarts itself (same pid)
        path.write_text(topology_text(kafka, prefix, tmp_path, extra_group="new", notes=True))
        os.kill(proc.pid, signal.SIGHUP)
        topo3 = load_topology(path)
        hq.write(work.changes(100))
        want3 = expected(topo3, engine=engine)
        got3 = wait_routed(topo3, want3, timeout=90)
        assert proc.poll() is None
        for g in ("us", "both"):
            assert any(c.table == "NOTES" for c in got3[g].changes)
        for g, gt in got3.items():
            fps = [fingerprint(c) for c in gt.changes]
            assert len(fps) == len(set(fps)) and set(fps) == want3[g], g
    finally:
        assert stop(proc) == 0


def test_two_workers_split_the_partitions(tmp_path: Path, kafka: str, engine: str) -> None:
    path, topo = write_topology(tmp_path, kafka)
    hq = HqWriter(topo)
    work = Workload(31)
    hq.write(work.changes(300))
    a = spawn_router(path, tmp_path, "a", engine=engine)
    b = spawn_router(path, tmp_path, "b", engine=engine)
    try:
        admin = AdminClient({"bootstrap.servers": kafka})
        group = f"{topo.kafka.topic_prefix}-router"
        deadline = time.monotonic() + 60
        while True:
            desc = admin.describe_consumer_groups([group])[group].result(30)
            parts = [{(tp.topic, tp.partition) for tp in m.assignment.topic_partitions} for m in desc.members]
            if desc.state == ConsumerGroupState.STABLE and len(parts) == 2 and all(parts):
                break
            assert time.monotonic() < deadline, f"no stable two-member group: {desc.state} {parts}"
            time.sleep(0.5)
        sources = {(f"{topo.kafka.topic_prefix}.hq.dbo.{t}", p) for t in ("ITEMS", "PRODUCTS", "STAFF")
                   for p in range(3)}
        assert not parts[0] & parts[1] and parts[0] | parts[1] == sources
        hq.write(work.changes(300))
        want = expected(topo, engine=engine)
        got = wait_routed(topo, want)
        for g, gt in got.items():
            applied = [fingerprint(c) for c in gt.applied()]
            assert len(applied) == len(set(applied)) and set(applied) == want[g], g
            if engine == "transactional":
                assert len(gt.changes) == len(want[g]), g
        assert {read_group(topo, g).tombstones for g in want} != {0}
    finally:
        assert stop(a) == 0 and stop(b) == 0
