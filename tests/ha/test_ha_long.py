"""Active/standby under repeated failure (marker ``ha``; ``make test-ha``, several minutes).

- kill -9 the active capture 10 times under load, a standby always running (the killed one is
  restarted as the new standby): every HQ change on the table topics once (read_committed), none
  missing; SQLite and PostgreSQL HQ.
- the same for the uploads of two channels (SQLite and PostgreSQL channel databases) with the HQ
  upload sink running: every sale reaches the upload topic and HQ exactly once.
- the active paused with SIGSTOP past the lease timeout (a zombie): the standby takes over; resumed
  with SIGCONT, the old active exits non-zero without writing.
- SIGTERM of the active hands over at once (well within the lease timeout); both started at once:
  one active.

Takeover times (kill -> first position committed by the new active) are printed: run with ``-s``.
"""

from __future__ import annotations

import os
import random
import signal
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
    lease_state,
    member,
    summary,
    takeover_seconds,
    upload_proc,
    wait_capture_caught_up,
    wait_for,
    wait_roles,
)
from tests.upload.helpers import (
    Proc,
    assert_channel_at_hq,
    create_databases,
    expected_rows,
    fresh_pg,
    hq_count,
    make_topology,
    topology_path,
)

pytestmark = [pytest.mark.integration, pytest.mark.ha]

KILLS = 10


def _capture_setup(tmp_path: Path, kafka: str, dialect: str, request: pytest.FixtureRequest):
    if dialect == "sqlite":
        dsn = f"sqlite:///{tmp_path}/hq.db"
    else:
        from cdx.infra.postgres import launcher

        dsn = launcher.create_database(request.getfixturevalue("postgres_server"), f"ha_{os.getpid()}_{time.time_ns()}")
    make_hq(dialect, dsn)
    path, topo = write_topology(tmp_path, kafka, dialect, dsn)
    tracker = open_tracker(dialect, dsn)
    tracker.enable(["dbo.ITEMS", "dbo.NOTES"])
    tracker.conn.close()
    return dsn, path, topo


def _restart_in_place(path: Path, tmp_path: Path, topo, topic: str, times: int = 3) -> list[float]:
    """The same-run baseline: capture without ``--ha`` killed and restarted at once on the same host
    (what a supervisor does when the host survives), until its first commit; then stopped."""
    proc = Proc(["capture", "--topology", str(path), "--poll-interval", "0.05"], tmp_path / "capture-solo.log")
    out = []
    proc.start()
    try:
        takeover_seconds(topo, topic, "hq/", time.time(), proc)  # running: it commits
        for _ in range(times):
            time.sleep(1.0)
            killed_at = time.time()
            proc.kill()
            proc.start()
            out.append(takeover_seconds(topo, topic, "hq/", killed_at, proc))
    finally:
        assert proc.stop() == 0
    return out


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_capture_kill9_ten_times(dialect: str, tmp_path: Path, kafka: str, request: pytest.FixtureRequest) -> None:
    dsn, path, topo = _capture_setup(tmp_path, kafka, dialect, request)
    topic = positions_topic(topo.kafka.topic_prefix)
    procs = [capture_proc(path, tmp_path / f"capture-{n}.log") for n in "ab"]
    writer = HqWriter(dialect, dsn, seed=17).start()
    rng = random.Random(20261207)
    times: list[float] = []
    active, standby = procs
    try:
        baseline = _restart_in_place(path, tmp_path, topo, topic)
        print(f"capture ({dialect}) baseline, kill -9 and restart in place without --ha: {summary(baseline)}")
        active.start()
        wait_roles(topo, "capture", "hq", active, None)
        standby.start()
        for _ in range(KILLS):
            wait_roles(topo, "capture", "hq", active, standby)
            time.sleep(rng.uniform(0.5, 3.0))
            killed_at = time.time()
            active.kill()
            times.append(takeover_seconds(topo, topic, "hq/", killed_at, standby))
            active.start()  # the killed one comes back as the standby
            active, standby = standby, active
        print(f"capture ({dialect}) takeover after kill -9, lease timeout 6 s: {summary(times)}")
        wait_roles(topo, "capture", "hq", active, standby)  # the restarted one handles SIGTERM by now
        writer.finish()
        wait_capture_caught_up(topo, dialect, dsn, active)
    finally:
        writer.stop.set()
        codes = [p.stop() for p in procs]
    assert codes == [0, 0]
    assert sum(p.kills for p in procs) == KILLS
    assert assert_capture_exactly_once(topo, dialect, dsn) > 1000


def test_upload_kill9_ten_times(tmp_path: Path, kafka: str, postgres_server: str) -> None:
    channels = ["s1", "s2"]
    topo = make_topology(tmp_path, kafka, fresh_pg(postgres_server, "hahq"), channels,
                         channel_dsns={"s2": fresh_pg(postgres_server, "has2")})
    create_databases(topo)
    path = topology_path(topo)
    topic = upload_positions_topic(topo.kafka.topic_prefix)
    procs = [upload_proc(path, tmp_path / f"upload-{n}.log") for n in "ab"]
    sink = Proc(["hq", "upload-sink", "--topology", str(path), "--instance-id", "ha-sink"], tmp_path / "sink.log")
    seller = Seller(topo, channels, seed=23).start()
    rng = random.Random(7)
    times: list[float] = []
    active, standby = procs
    try:
        sink.start()
        active.start()
        for c in channels:
            wait_roles(topo, "upload", c, active, None)
        standby.start()
        for _ in range(KILLS):
            for c in channels:
                wait_roles(topo, "upload", c, active, standby)
            time.sleep(rng.uniform(0.5, 3.0))
            killed_at = time.time()
            active.kill()
            times.append(max(takeover_seconds(topo, topic, f"{c}/", killed_at, standby) for c in channels))
            active.start()
            active, standby = standby, active
        print(f"upload takeover after kill -9 (both channels), lease timeout 6 s: {summary(times)}")
        for c in channels:
            wait_roles(topo, "upload", c, active, standby)
        assert seller.finish() > 100
        assert_uploaded_exactly_once(topo, channels, active)
        want = expected_rows(topo)
        wait_for(lambda: hq_count(topo) >= want, 120, f"HQ to hold {want} rows", check=sink.check)
        time.sleep(1.0)
    finally:
        seller.stop.set()
        codes = [p.stop() for p in (*procs, sink)]
    assert codes == [0, 0, 0]
    assert hq_count(topo) == want
    for c in channels:
        assert_channel_at_hq(topo, c)


def _zombie(role: str, name: str, topo, active: Proc, standby: Proc, topic: str, key: str) -> float:
    """SIGSTOP the active past the lease timeout, wait for the standby to commit, SIGCONT: the old
    active must exit non-zero (fenced or lease lost). Returns the takeover time."""
    assert active.proc is not None
    paused_at = time.time()
    os.kill(active.proc.pid, signal.SIGSTOP)
    try:
        took = takeover_seconds(topo, topic, key, paused_at, standby)
        wait_for(lambda: lease_state(topo, role, name).active == member(standby), 30, "the standby to hold the lease")
    finally:
        os.kill(active.proc.pid, signal.SIGCONT)
    code = active.proc.wait(60)
    text = active.log.read_text()
    assert code != 0, text[-2000:]
    assert "took over" in text or "fenced" in text, text[-2000:]
    return took


def test_capture_zombie_is_fenced_and_exits(tmp_path: Path, kafka: str, request: pytest.FixtureRequest) -> None:
    dsn, path, topo = _capture_setup(tmp_path, kafka, "postgresql", request)
    active, standby = (capture_proc(path, tmp_path / f"capture-{n}.log") for n in "ab")
    writer = HqWriter("postgresql", dsn, seed=31).start()
    try:
        active.start()
        wait_roles(topo, "capture", "hq", active, None)
        standby.start()
        wait_roles(topo, "capture", "hq", active, standby)
        time.sleep(1.0)
        took = _zombie("capture", "hq", topo, active, standby, positions_topic(topo.kafka.topic_prefix), "hq/")
        print(f"capture takeover from a SIGSTOPped active: {took:.1f}s")
        time.sleep(2.0)
        writer.finish()
        wait_capture_caught_up(topo, "postgresql", dsn, standby)
    finally:
        writer.stop.set()
        code = standby.stop()
        active.stop()
    assert code == 0
    assert assert_capture_exactly_once(topo, "postgresql", dsn) > 0


def test_upload_zombie_is_fenced_and_exits(tmp_path: Path, kafka: str) -> None:
    topo = make_topology(tmp_path, kafka, f"sqlite:///{tmp_path}/hq.db", ["s1"])
    create_databases(topo)
    active, standby = (upload_proc(topology_path(topo), tmp_path / f"upload-{n}.log") for n in "ab")
    seller = Seller(topo, ["s1"], seed=41).start()
    try:
        active.start()
        wait_roles(topo, "upload", "s1", active, None)
        standby.start()
        wait_roles(topo, "upload", "s1", active, standby)
        time.sleep(1.0)
        took = _zombie("upload", "s1", topo, active, standby, upload_positions_topic(topo.kafka.topic_prefix),
                       "s1/")
        print(f"upload takeover from a SIGSTOPped active: {took:.1f}s")
        time.sleep(2.0)
        seller.finish()
        assert_uploaded_exactly_once(topo, ["s1"], standby)
    finally:
        seller.stop.set()
        code = standby.stop()
        active.stop()
    assert code == 0


def _one_active_one_standby(topo, role: str, name: str) -> bool:
    state = lease_state(topo, role, name)
    return state.active is not None and len(state.standby) == 1


def test_sigterm_hands_over_at_once_and_both_started_together(tmp_path: Path, kafka: str) -> None:
    """Capture and upload pairs started at the same moment get one active each; SIGTERM of each
    active (repeated 3 times, the stopped one restarted as standby) hands over without waiting for
    the lease timeout; nothing lost, nothing twice."""
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
    pairs = [(cap_topo, "capture", "hq", cap, positions_topic(cap_topo.kafka.topic_prefix)),
             (up_topo, "upload", "s1", up, upload_positions_topic(up_topo.kafka.topic_prefix))]
    times: dict[str, list[float]] = {"capture": [], "upload": []}
    try:
        for p in (*cap, *up):
            p.start()
        for topo, role, name, _, _ in pairs:
            wait_for(lambda t=topo, r=role, n=name: _one_active_one_standby(t, r, n), 60,  # type: ignore[misc]
                     f"one active {role}, one standby")
        for _ in range(3):
            for topo, role, name, procs, topic in pairs:
                state = lease_state(topo, role, name)
                active = next(p for p in procs if member(p) == state.active)
                standby = next(p for p in procs if p is not active)
                wait_roles(topo, role, name, active, standby)
                time.sleep(1.0)
                stopped_at = time.time()
                assert active.stop() == 0
                times[role].append(takeover_seconds(topo, topic, f"{name}/", stopped_at, standby))
                active.start()
        for topo, role, name, _, _ in pairs:
            wait_for(lambda t=topo, r=role, n=name: _one_active_one_standby(t, r, n), 60,  # type: ignore[misc]
                     f"one active {role}, one standby")
        for role, t in times.items():
            print(f"{role} takeover after SIGTERM of the active: {summary(t)}")
        assert writer.finish() > 0 and seller.finish() > 0
        cap_active = next(p for p in cap if member(p) == lease_state(cap_topo, "capture", "hq").active)
        wait_capture_caught_up(cap_topo, "sqlite", hq, cap_active)
        assert assert_capture_exactly_once(cap_topo, "sqlite", hq) > 0
        up_active = next(p for p in up if member(p) == lease_state(up_topo, "upload", "s1").active)
        assert assert_uploaded_exactly_once(up_topo, ["s1"], up_active) > 0
    finally:
        writer.stop.set(), seller.stop.set()
        codes = [p.stop() for p in (*cap, *up)]
    assert codes == [0, 0, 0, 0]
