"""Capture rides through a lost producer in process (issue 16), on the single local broker.

A broker failover can fence capture's producer although no other capture runs: the transaction
coordinator of its ``transactional.id`` moves and bumps the epoch. The same path is forced here: while
``cdx capture --ha`` captures a steady load, a second producer with capture's ``transactional.id`` calls
``init_transactions``, which aborts capture's open transaction and fences its producer, twice. Capture
still holds its lease, so it must keep running (no supervisor here), replace its producer, re-read its
positions and go on: the table topic, read read_committed, holds every change exactly once and ends
equal to HQ's table.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from confluent_kafka import Producer

from cdx.connectors.capture.tracking import open_tracker
from cdx.kafka.config import client_config, producer_config
from cdx.topics import positions_topic
from tests.capture.helpers import make_hq, write_topology
from tests.ha.helpers import (
    HqWriter,
    assert_capture_exactly_once,
    capture_proc,
    newest_position_ms,
    wait_capture_caught_up,
    wait_for,
    wait_roles,
)

pytestmark = [pytest.mark.integration]

FENCES = 2


def fence(bootstrap: str, txn_id: str) -> None:
    """What a coordinator move does to capture's producer: a newer epoch for its transactional id."""
    intruder = Producer(producer_config(client_config(bootstrap), transactional_id=txn_id))
    intruder.init_transactions(60)
    intruder.flush(5)


def test_a_fenced_capture_recovers_in_process_every_change_once(tmp_path: Path, kafka: str) -> None:
    dsn = f"sqlite:///{tmp_path}/hq.db"
    make_hq("sqlite", dsn)
    path, topo = write_topology(tmp_path, kafka, "sqlite", dsn)
    tracker = open_tracker("sqlite", dsn)
    tracker.enable(["dbo.ITEMS", "dbo.NOTES"])
    tracker.conn.close()
    prefix = topo.kafka.topic_prefix
    proc = capture_proc(path, tmp_path / "capture.log")
    writer = HqWriter("sqlite", dsn, seed=11)
    try:
        proc.start()
        wait_roles(topo, "capture", "hq", proc, None)
        writer.start()
        for _ in range(FENCES):
            since = time.time()
            wait_for(lambda since=since: newest_position_ms(topo, positions_topic(prefix), "hq/") > since * 1000,
                     120, "capture to commit", check=proc.check)
            fence(kafka, f"{prefix}-capture-hq")
            time.sleep(2.0)
            proc.check()  # still running: it recovers instead of exiting
        since = time.time()
        wait_for(lambda: newest_position_ms(topo, positions_topic(prefix), "hq/") > since * 1000, 120,
                 "capture to commit after the fences", check=proc.check)
        assert writer.finish() > 0
        wait_capture_caught_up(topo, "sqlite", dsn, proc)
        proc.check()
    finally:
        writer.stop.set()
        code = proc.stop(60)
    log = (tmp_path / "capture.log").read_text()
    assert code == 0, log[-3000:]
    assert "recovered from a lost producer" in log, log[-3000:]
    assert assert_capture_exactly_once(topo, "sqlite", dsn) > 0
    print(f"{FENCES} fences, {log.count('recovered from a lost producer')} recoveries")
