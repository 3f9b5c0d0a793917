"""Download sessions: one Applied session per committed batch (same transaction), covering every
group-topic offset exactly once, also across SIGKILLs of the sink; bounded retention."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cdx.connectors.sink import sessions as hist
from cdx.connectors.sink.init import init_databases
from cdx.connectors.sink.sessions import APPLIED, Session, SessionLog
from cdx.dialects import connect, get_dialect
from cdx.stage.sessions import kernel_ref
from tests.sink.helpers import (
    Db,
    FakeRouter,
    assert_tables_equal,
    expected_state,
    pg_db,
    sqlite_db,
    stored_offsets,
    wait_until,
    workload,
    write_topology,
)
from tests.sink_ops.helpers import caught_up, cli, host_state, sessions_of

pytestmark = pytest.mark.integration


def assert_exact_cover(sessions: list[Session], ends: dict[int, int]) -> None:
    """The Applied sessions' offset ranges cover [0, end) of every partition, each offset once."""
    covered: dict[int, list[tuple[int, int]]] = {}
    for s in sessions:
        if s.status == APPLIED and s.kind == "batch":
            for p, (first, last) in s.offsets.items():
                covered.setdefault(p, []).append((first, last))
    for p, end in ends.items():
        ranges = sorted(covered.get(p, []))
        nxt = 0
        for first, last in ranges:
            assert first == nxt, f"partition {p}: offsets {nxt}..{first - 1} missing or {first}.. applied twice"
            nxt = last + 1
        assert nxt == end, f"partition {p}: sessions end at {nxt}, topic at {end}"


def test_sessions_recorded_sqlite_and_postgresql(tmp_path: Path, kafka: str, postgres_server: str,
                                                 run_host) -> None:
    c1 = sqlite_db(tmp_path, "c1", recid=1)
    c2 = pg_db(postgres_server, "c2", recid=2)
    path, topo = write_topology(tmp_path, kafka, [c1, c2])
    router = FakeRouter(topo)
    workload(router, 2500, seed=5, keys=200, resend_every=300)
    router.flush()
    host = run_host(topo, batch_size=400)
    wait_until(lambda: caught_up(host, router), 60, "sinks to catch up", lambda: host_state(host))
    ends = router.ends()
    for db in (c1, c2):
        sessions = sessions_of(db)
        assert sessions and all(s.status == APPLIED and s.kind == "batch" for s in sessions)
        assert len(sessions) == next(s for s in host.sinks if s.name == db.id).totals.batches
        assert_exact_cover(sessions, ends)
        assert sum(s.records for s in sessions) == sum(ends.values())
        assert sum(s.duplicates for s in sessions) == router.resent > 0
        assert sum(s.rows_upserted for s in sessions) > 0 and sum(s.rows_deleted for s in sessions) > 0
        assert sum(s.rows_filtered for s in sessions) > 0
        assert {t for s in sessions for t in s.tables.split(",") if t} == {"ax.PARENT", "ax.CHILD", "ax.CHANCFG"}
        assert {s.jobs for s in sessions} == {"1040"}
        last = sessions[-1]
        assert last.last_source_ts is not None and last.finished_at is not None and last.started_at is not None
        assert abs((dt.datetime.now(dt.UTC).replace(tzinfo=None) - last.finished_at).total_seconds()) < 60
        assert [s.session_id for s in sessions] == sorted(s.session_id for s in sessions)
        assert_tables_equal(db, expected_state(router.sent, recid=db.recid))
        res = cli("channel", "sessions", "--topology", path, "--channel", db.id, "--limit", "3", "--json")
        assert res.exit_code == 0, res.output
        assert [x["session_id"] for x in json.loads(res.stdout)] == [s.session_id for s in sessions[::-1][:3]]
    res = cli("channel", "sessions", "--topology", path, "--channel", "c2")
    assert res.exit_code == 0 and "Download sessions of c2" in res.output and "Applied" in res.output


def test_session_retention_by_age_and_count(tmp_path: Path) -> None:
    d = get_dialect("sqlite")
    conn = connect("sqlite", f"sqlite:///{tmp_path}/s.db")
    log = SessionLog(d, "c1", retention_days=1, max_rows=5, prune_every=1000)
    old = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(days=3)
    with d.transaction(conn):
        log.ensure(conn)
        hist.insert(conn, d, [Session("c1", finished_at=old, offsets={0: (i, i)}) for i in range(3)])
        hist.insert(conn, d, [Session("other", finished_at=old)])
        for i in range(8):
            log.record(conn, Session("c1", offsets={0: (10 + i, 10 + i)}, error="x" * 5000 if i == 7 else None))
    with d.transaction(conn):
        assert log.prune(conn) == 3 + 3
    kept = hist.recent(conn, d, "c1", 100)
    assert [s.offsets[0][0] for s in kept] == [17, 16, 15, 14, 13]
    assert len(kept[0].error or "") == hist.ERROR_LIMIT
    assert len(hist.recent(conn, d, "other", 100)) == 1  # another owner's sessions are its own business
    assert hist.last(conn, d, "c1").offsets == {0: (17, 17)}  # type: ignore[union-attr]
    assert hist.last(conn, d, "c1", "Failed") is None
    conn.close()
    assert kernel_ref(get_dialect("postgresql"), hist.TABLE) == ("cdx", hist.TABLE)
    assert kernel_ref(d, hist.TABLE) == (None, hist.TABLE)
    assert get_dialect("sqlserver").qualified(*kernel_ref(get_dialect("sqlserver"), hist.TABLE)) \
        == get_dialect("sqlserver").kernel_table(hist.TABLE)


TRIGGERS = """
CREATE TABLE applied_log (tbl TEXT NOT NULL, id INTEGER NOT NULL, ver INTEGER NOT NULL);
CREATE TRIGGER p_ins AFTER INSERT ON ax_PARENT BEGIN INSERT INTO applied_log VALUES ('P', new.ID, new.VER); END;
CREATE TRIGGER p_upd AFTER UPDATE ON ax_PARENT BEGIN INSERT INTO applied_log VALUES ('P', new.ID, new.VER); END;
"""


def test_no_change_applied_twice_across_sigkill(tmp_path: Path, kafka: str) -> None:
    """Sessions and rows commit together: after SIGKILLs, the sessions cover each offset exactly once
    and no row version was written twice."""
    db: Db = sqlite_db(tmp_path, "c1")
    path, topo = write_topology(tmp_path, kafka, [db])
    router = FakeRouter(topo)
    router.change("PARENT", "c", {"DATAAREAID": "usrt", "ID": -1, "NAME": "seed", "PRICE": None, "VER": -1,
                                  "TS": None})
    router.flush()
    init_databases(topo)
    conn = sqlite3.connect(tmp_path / "c1.db")
    conn.executescript(TRIGGERS)
    conn.close()

    def produce() -> None:
        workload(router, 12_000, seed=11, keys=1500, resend_every=400, tables=("PARENT",),
                 on_change=lambda i: time.sleep(0.003) if i % 100 == 0 else None)
        router.flush()

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    out = (tmp_path / "sink.log").open("ab")

    def spawn() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "cdx.cli.main", "sink", "--topology", str(path),
                                 "--batch-size", "500"], stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    rng = random.Random(3)
    kills = 0
    proc = spawn()
    try:
        while producer.is_alive() or kills < 4:
            time.sleep(rng.uniform(0.7, 1.6))
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            kills += 1
            proc = spawn()
        producer.join()
        ends = router.ends()
        wait_until(lambda: all(stored_offsets(db, router.topic).get(p, 0) >= e for p, e in ends.items() if e), 60,
                   "the sink to catch up", lambda: (tmp_path / "sink.log").read_text()[-2000:])
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        out.close()
    assert kills >= 4 and router.resent > 0
    assert_tables_equal(db, expected_state(router.sent))
    sessions = sessions_of(db)
    assert_exact_cover(sessions, ends)
    assert sum(s.duplicates for s in sessions) >= router.resent
    conn = sqlite3.connect(tmp_path / "c1.db")
    rows = conn.execute("SELECT tbl, id, ver FROM applied_log ORDER BY rowid").fetchall()
    conn.close()
    assert len(rows) == len(set(rows)), "a change was applied twice"
    last: dict[tuple[str, int], int] = {}
    for tbl, key, ver in rows:  # and in order: a key's versions only ever go up
        assert ver > last.get((tbl, key), -2), f"{tbl} {key}: version {ver} applied after {last[(tbl, key)]}"
        last[(tbl, key)] = ver
