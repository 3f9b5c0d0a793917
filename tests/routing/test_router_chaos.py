"""The transactional engine under SIGKILL (marker ``chaos``, run with ``make test-chaos``, ~8 min): 100,000
HQ changes, the router killed 10 times while it routes them; every group topic, read
read_committed, holds every routed record exactly once. And with group topics compacting while
the router is killed, a lagging reader that keeps only records above its watermark (as a sink does)
ends with every key's last change (defect (c): re-sends behind compaction made it skip updates)."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaException

from cdx.kafka.admin import COMPACTED, TopicSpec, ensure_topics
from cdx.kafka.config import client_config
from cdx.kafka.reading import high_watermarks
from tests.routing.helpers import (
    HqWriter,
    Workload,
    expected,
    fingerprint,
    read_group,
    spawn_router,
    stop,
    wait_routed,
    write_topology,
)

pytestmark = [pytest.mark.integration, pytest.mark.chaos]


def group_total(topo: Any) -> int:
    cfg = client_config(topo.kafka.bootstrap_servers)
    try:
        return sum(sum(high_watermarks(cfg, topo.group_topic(g.id)).values()) for g in topo.channel_data_groups)
    except KafkaException:  # a group topic the router has just created
        return 0


def kill_while_writing(path: Path, tmp: Path, topo: Any, hq: HqWriter, work: Workload, txns: int, per_txn: int,
                       kills: int, seed: int) -> None:
    """Write ``txns`` x ``per_txn`` changes in a thread while the router is SIGKILLed ``kills`` times."""
    done = threading.Event()

    def writer() -> None:
        for _ in range(txns):
            hq.write(work.changes(per_txn))
            time.sleep(0.02)
        done.set()

    rng = random.Random(seed)
    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    for _ in range(kills):
        before = group_total(topo)
        proc = spawn_router(path, tmp, "router", "--instance-id", "w1")
        deadline = time.monotonic() + 90
        while group_total(topo) <= before and time.monotonic() < deadline:
            if done.is_set() and time.monotonic() > deadline - 75:
                break  # the writer finished and this run found nothing new in 15 s: everything was routed
            time.sleep(0.1)  # until this run routes
        time.sleep(rng.uniform(0.2, 2.0))
        assert proc.poll() is None, "router died on its own"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    thread.join(600)
    assert done.is_set()


def test_ten_sigkills_during_100k_changes_nothing_twice_nothing_missing(tmp_path: Path, kafka: str) -> None:
    path, topo = write_topology(tmp_path, kafka)
    hq = HqWriter(topo)
    work = Workload(17)
    kill_while_writing(path, tmp_path, topo, hq, work, txns=100, per_txn=1000, kills=10, seed=5)
    proc = spawn_router(path, tmp_path, "router", "--instance-id", "w1")
    try:
        want = expected(topo)
        got = wait_routed(topo, want, timeout=600)
    finally:
        assert stop(proc) == 0
    for g, gt in got.items():
        fps = [fingerprint(c) for c in gt.changes]
        assert len(fps) == len(set(fps)), f"{g}: {len(fps) - len(set(fps))} source changes twice"
        assert set(fps) == want[g], f"{g}: {len(want[g] - set(fps))} missing"
    print(f"10 SIGKILLs; {sum(len(w) for w in want.values()):,} routed records, each exactly once")


def last_per_key(changes: Any) -> dict[Any, Any]:
    """(table, key) -> (op, row) of the last change (a sink's end state, deletes included)."""
    out: dict[Any, Any] = {}
    for c in changes:
        out[(c.table, tuple(sorted(c.key.items())))] = (c.op, tuple(sorted((c.row or {}).items())))
    return out


def last_expected(fps: set[Any]) -> dict[Any, Any]:
    """The same from expected fingerprints (a key's changes share one source partition: offset order)."""
    out: dict[Any, Any] = {}
    for _pos, _schema, table, op, key, row in sorted(fps, key=lambda f: f[0].offset):
        out[(table, key)] = (op, row or ())
    return out


def test_a_lagging_reader_of_compacted_group_topics_misses_no_update(tmp_path: Path, kafka: str) -> None:
    path, topo = write_topology(tmp_path, kafka)
    k = topo.kafka
    fast = {**COMPACTED, "segment.ms": "300", "min.cleanable.dirty.ratio": "0.01"}
    ensure_topics(client_config(kafka), [TopicSpec(topo.group_topic(g.id), k.default_partitions, 1, fast)
                                         for g in topo.channel_data_groups])
    hq = HqWriter(topo)
    work = Workload(23)
    kill_while_writing(path, tmp_path, topo, hq, work, txns=40, per_txn=250, kills=4, seed=9)
    proc = spawn_router(path, tmp_path, "router", "--instance-id", "w1")
    try:
        want = expected(topo)
        wait_routed(topo, {g: set() for g in want})
        time.sleep(5)  # let the cleaner compact what was routed
        hq.write(work.changes(200))  # roll the segments once more
        want = expected(topo)
        deadline = time.monotonic() + 120
        while True:
            got = {g: read_group(topo, g) for g in want}
            if all(last_per_key(got[g].applied()) == last_expected(want[g]) for g in want):
                break
            assert time.monotonic() < deadline, "a lagging reader misses updates"
            time.sleep(1)
    finally:
        assert stop(proc) == 0
    for g, gt in got.items():
        fps = [fingerprint(c) for c in gt.changes]
        assert len(fps) == len(set(fps)), g  # no re-send survives, so nothing can be skipped as covered
