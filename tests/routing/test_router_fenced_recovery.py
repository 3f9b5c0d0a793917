"""The transactional engine rides through a fenced producer (``cdx.streams.recovery``) on the single local broker.

A broker failover can fence the router's producer (the transaction coordinator moves and bumps the epoch);
the same path is forced here: while the router routes a steady load, a second producer with the router's
``transactional.id`` calls ``init_transactions``, which aborts the router's open transaction and fences its
producer (once in make test, ``CDX_TEST_FENCES`` times for a soak). The router must keep running (no
supervisor here), replace its producer, and go on from what is committed: every group topic, read
read_committed, holds every source change exactly once.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer

from cdx.kafka.config import client_config, producer_config
from cdx.streams.engine import transactional_id
from tests.routing.helpers import (
    HqWriter,
    Workload,
    expected,
    fingerprint,
    spawn_router,
    stop,
    wait_routed,
    write_topology,
)
from tests.routing.test_router_chaos import group_total

pytestmark = [pytest.mark.integration]

FENCES = int(os.environ.get("CDX_TEST_FENCES", "1"))
"""Fences during the run: 1 in ``make test`` (each recovery costs the suite about 50 s); set more to soak."""


def fence(bootstrap: str, txn_id: str) -> None:
    """What a coordinator move does to the router's producer: a newer epoch for its transactional id."""
    intruder = Producer(producer_config(client_config(bootstrap), transactional_id=txn_id))
    intruder.init_transactions(60)
    intruder.flush(5)


def test_a_fenced_router_recovers_in_process_nothing_twice_nothing_missing(tmp_path: Path, kafka: str) -> None:
    path, topo = write_topology(tmp_path, kafka)
    hq = HqWriter(topo)
    work = Workload(23)
    done = threading.Event()
    fenced = threading.Event()  # every fence happened
    log = tmp_path / "router.log"

    def recovered() -> bool:
        return log.read_text(errors="replace").count("recovered from a lost producer") >= FENCES

    def writer() -> None:
        """Write until the router has recovered from every fence, then five batches more (it routes
        them with its new producer): every fence lands under load, however slowly the router starts
        (a fixed 60 batches could all be routed before the first fence on a busy machine)."""
        after = 0
        for _ in range(300):
            hq.write(work.changes(300))
            after += fenced.is_set() and recovered()
            if after > 5:
                break
            time.sleep(0.05)
        done.set()

    proc = spawn_router(path, tmp_path, "router", "--instance-id", "w1")
    try:
        thread = threading.Thread(target=writer, daemon=True)
        thread.start()
        for _ in range(FENCES):
            before = group_total(topo)
            deadline = time.monotonic() + 120
            while group_total(topo) <= before and time.monotonic() < deadline:
                time.sleep(0.1)  # until the router routes (a transaction is open most of the time)
            fence(kafka, transactional_id(topo, "w1"))
            time.sleep(1.0)
            assert proc.poll() is None, "the router exited instead of recovering"
        fenced.set()
        thread.join(600)
        assert done.is_set()
        want = expected(topo)
        got = wait_routed(topo, want, timeout=600)
        assert proc.poll() is None, "the router exited instead of recovering"
    finally:
        code = stop(proc, timeout=60)
    text = log.read_text()
    assert code == 0, text[-3000:]
    assert "recovered from a lost producer" in text, text[-3000:]
    for g, gt in got.items():
        fps = [fingerprint(c) for c in gt.changes]
        assert len(fps) == len(set(fps)), f"{g}: {len(fps) - len(set(fps))} source changes twice"
        assert set(fps) == want[g], f"{g}: {len(want[g] - set(fps))} missing"
    print(f"{FENCES} fences, {text.count('recovered from a lost producer')} recoveries;"
          f" {sum(len(w) for w in want.values()):,} routed records, each exactly once")
