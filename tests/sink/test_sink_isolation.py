"""A slow (locked) SQLite database and an unreachable (renamed) PostgreSQL database do not hold
back the other channels; both catch up by themselves when they return."""

from __future__ import annotations

import sqlite3
import time
from functools import partial
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict

from cdx.dialects import connect
from tests.sink.helpers import (
    FakeRouter,
    assert_tables_equal,
    expected_state,
    pg_db,
    sqlite_db,
    wait_until,
    workload,
    write_topology,
)

pytestmark = pytest.mark.integration


def _current(sink, ends: dict[int, int]) -> bool:
    return all(sink.state.offsets.get(p, 0) >= e for p, e in ends.items() if e)


def _admin(server: str, *sql: str) -> None:
    conn = connect("postgresql", server)
    conn.autocommit = True
    for s in sql:
        conn.execute(s)
    conn.close()


def _take_down(server: str, name: str) -> None:
    """Refuse new connections, drop the sink's, and rename the database away."""
    _admin(server, f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    deadline = time.monotonic() + 20
    while True:
        try:
            _admin(server, f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'",
                   f'ALTER DATABASE "{name}" RENAME TO "{name}_away"')
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _bring_back(server: str, name: str) -> None:
    _admin(server, f'ALTER DATABASE "{name}_away" RENAME TO "{name}"',
           f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')


def test_down_channels_catch_up_while_others_stay_current(tmp_path: Path, kafka: str, postgres_server: str,
                                                         run_host) -> None:
    slow = sqlite_db(tmp_path, "slow")
    healthy = sqlite_db(tmp_path, "healthy")
    down = pg_db(postgres_server, "down")
    pg_name = str(conninfo_to_dict(down.dsn)["dbname"])
    _, topo = write_topology(tmp_path, kafka, [slow, healthy, down])
    router = FakeRouter(topo)
    workload(router, 1000, seed=5, keys=200)
    router.flush()
    host = run_host(topo, backoff_max=0.5)
    sinks = {s.name: s for s in host.sinks}
    ends = router.ends()
    wait_until(lambda: all(_current(s, ends) for s in host.sinks), 60, "initial catch-up")

    lock = sqlite3.connect(str(tmp_path / "slow.db"), timeout=30)
    lock.execute("BEGIN EXCLUSIVE")
    _take_down(postgres_server, pg_name)
    try:
        for round_ in range(3):
            workload(router, 500, seed=10 + round_, keys=200, resend_every=100)
            router.flush()
            ends = router.ends()
            wait_until(partial(_current, sinks["healthy"], ends), 30, "the healthy channel to stay current")
        assert_tables_equal(healthy, expected_state(router.sent, recid=1))
        assert not _current(sinks["slow"], ends) and not _current(sinks["down"], ends)
        wait_until(lambda: sinks["down"].status == "waiting", 10, "the down channel to wait")
    finally:
        lock.rollback()
        lock.close()
        _bring_back(postgres_server, pg_name)
    wait_until(lambda: all(_current(s, ends) for s in host.sinks), 60, "the returning channels to catch up",
               lambda: str([(s.name, s.status, s.last_error) for s in host.sinks]))
    for db in (slow, healthy, down):
        assert_tables_equal(db, expected_state(router.sent, recid=1))
    for s in host.sinks:
        assert s.status == "running" and s.totals.dead_lettered == 0, (s.name, s.last_error)
        assert s.totals.duplicates == router.resent
