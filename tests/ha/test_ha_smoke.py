"""Active/standby smoke test (default run): capture and a channel's upload each run as two processes
(``--ha``) started together under load: one of each becomes active, ``cdx status`` names both; the
actives are killed with ``kill -9`` at once and each standby takes over; nothing lost, nothing
twice. The long runs (10 takeovers each, SIGSTOP zombies, SIGTERM handover) are ``make test-ha``
(marker ``ha``)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from cdx.connectors.capture.tracking import open_tracker
from cdx.topics import positions_topic, upload_positions_topic
from tests.capture.helpers import make_hq, write_topology
from tests.ha.helpers import (
    HqWriter,
    Seller,
    assert_capture_exactly_once,
    assert_uploaded_exactly_once,
    capture_proc,
    member,
    settle,
    takeover_seconds,
    upload_proc,
    wait_capture_caught_up,
)
from tests.upload.helpers import create_databases, make_topology, topology_path

pytestmark = [pytest.mark.integration]


def test_standbys_take_over_after_kill(tmp_path: Path, kafka: str) -> None:
    hq = f"sqlite:///{tmp_path}/hq.db"
    make_hq("sqlite", hq)
    cap_path, cap_topo = write_topology(tmp_path, kafka, "sqlite", hq)
    tracker = open_tracker("sqlite", hq)
    tracker.enable(["dbo.ITEMS", "dbo.NOTES"])
    tracker.conn.close()
    up_topo = make_topology(tmp_path, kafka, f"sqlite:///{tmp_path}/hq-up.db", ["s1"])
    create_databases(up_topo)
    cap = [capture_proc(cap_path, tmp_path / f"capture-{n}.log") for n in "ab"]
    up = [upload_proc(topology_path(up_topo), tmp_path / f"upload-{n}.log") for n in "ab"]
    writer, seller = HqWriter("sqlite", hq, seed=3).start(), Seller(up_topo, ["s1"], seed=5).start()
    try:
        for p in (*cap, *up):  # started together: one of each pair becomes active
            p.start()
        cap = settle(cap_topo, "capture", "hq", cap)
        up = settle(up_topo, "upload", "s1", up)
        _status_shows(cap_topo, cap, up_topo, up)
        killed_at = time.time()
        cap[0].kill(), up[0].kill()
        took = (takeover_seconds(cap_topo, positions_topic(cap_topo.kafka.topic_prefix), "hq/", killed_at, cap[1]),
                takeover_seconds(up_topo, upload_positions_topic(up_topo.kafka.topic_prefix), "s1/", killed_at,
                                 up[1]))
        print(f"takeover after kill -9 (lease timeout 6 s): capture {took[0]:.1f}s, upload <= {took[1]:.1f}s")
        time.sleep(0.5)
        assert writer.finish() > 0 and seller.finish() > 0
        wait_capture_caught_up(cap_topo, "sqlite", hq, cap[1])
        assert assert_capture_exactly_once(cap_topo, "sqlite", hq) > 0
        assert assert_uploaded_exactly_once(up_topo, ["s1"], up[1]) > 0
    finally:
        writer.stop.set(), seller.stop.set()
        codes = (cap[1].stop(), up[1].stop())
        for p in (cap[0], up[0]):
            p.stop()  # already killed unless the test failed before
    assert codes == (0, 0)


def _status_shows(cap_topo, cap: list, up_topo, up: list) -> None:
    """``cdx status``'s roles name the active and the standby process of capture and of the upload."""
    from cdx.connectors.sink.roles import roles
    from cdx.kafka.config import client_config

    capture = next(r for r in roles(client_config(kafka_of(cap_topo)), cap_topo) if r.role == "capture")
    assert f"active on {member(cap[0])}; standby {member(cap[1])}" in capture.detail, capture.detail
    upload = next(r for r in roles(client_config(kafka_of(up_topo)), up_topo) if r.role == "upload")
    assert (upload.name, upload.running) == ("s1", True)
    assert upload.detail == f"active on {member(up[0])}; standby {member(up[1])}", upload.detail


def kafka_of(topo) -> str:
    return str(topo.kafka.bootstrap_servers)
