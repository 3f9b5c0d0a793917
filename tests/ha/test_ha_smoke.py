"""Active/standby smoke test (default run): one ``kill -9`` takeover each for capture and for a
channel's upload, with real processes under load; nothing lost, nothing twice. The long runs
(10 takeovers, SIGSTOP zombies, SIGTERM handover, both started at once) are ``make test-ha``."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from cdx.topics import positions_topic, upload_positions_topic
from connectors.capture.tracking import open_tracker
from tests.capture.helpers import make_hq, write_topology
from tests.ha.helpers import (
    HqWriter,
    assert_capture_exactly_once,
    capture_proc,
    takeover_seconds,
    upload_proc,
    wait_capture_caught_up,
    wait_roles,
)

pytestmark = [pytest.mark.integration]


def test_capture_standby_takes_over_after_kill(tmp_path: Path, kafka: str) -> None:
    dsn = f"sqlite:///{tmp_path}/hq.db"
    make_hq("sqlite", dsn)
    path, topo = write_topology(tmp_path, kafka, "sqlite", dsn)
    tracker = open_tracker("sqlite", dsn)
    tracker.enable(["dbo.ITEMS", "dbo.NOTES"])
    tracker.conn.close()
    writer = HqWriter("sqlite", dsn, seed=3).start()
    first = capture_proc(path, tmp_path / "a.log").start()
    second = capture_proc(path, tmp_path / "b.log")
    try:
        wait_roles(topo, "capture", "hq", first, None)
        second.start()
        wait_roles(topo, "capture", "hq", first, second)
        time.sleep(1.0)
        killed_at = time.time()
        first.kill()
        took = takeover_seconds(topo, positions_topic(topo.kafka.topic_prefix), "hq/", killed_at, second)
        print(f"capture takeover after kill -9: {took:.1f}s")
        time.sleep(1.0)
        writer.finish()
        wait_capture_caught_up(topo, "sqlite", dsn, second)
    finally:
        writer.stop.set()
        code = second.stop()
    assert code == 0
    assert assert_capture_exactly_once(topo, "sqlite", dsn) > 0
