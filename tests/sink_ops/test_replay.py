"""``cdx replay``: rewinding a channel from an offset, a timestamp or the beginning re-applies the
records (they are not skipped as re-sends) and ends in exactly the state it had; refused while the
channel's sink runs."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pytest

from cdx.connectors.sink.rewind import parse_timestamp
from cdx.kafka.rewind import replay_targets
from tests.sink.helpers import (
    FakeRouter,
    assert_tables_equal,
    expected_state,
    pg_db,
    read_table,
    sqlite_db,
    stored_offsets,
    wait_until,
    workload,
    write_topology,
)
from tests.sink_ops.helpers import caught_up, cli, host_state, sessions_of

pytestmark = pytest.mark.integration


def _snapshot(db) -> dict:
    return {t: read_table(db.dialect, db.dsn, "ax", t) for t in ("PARENT", "CHILD", "CHANCFG")}


def test_replay_from_offset_timestamp_beginning(tmp_path: Path, kafka: str, postgres_server: str, run_host) -> None:
    c1 = sqlite_db(tmp_path, "c1", recid=1)
    c2 = pg_db(postgres_server, "c2", recid=2)
    path, topo = write_topology(tmp_path, kafka, [c1, c2])
    router = FakeRouter(topo)
    workload(router, 1500, seed=21, keys=150, resend_every=200)
    router.flush()
    time.sleep(0.05)
    middle = int(time.time() * 1000)
    time.sleep(0.05)
    workload(router, 1500, seed=22, keys=150, resend_every=200)
    router.flush()
    host = run_host(topo)
    wait_until(lambda: caught_up(host, router), 60, "sinks", lambda: host_state(host))

    res = cli("replay", "--topology", path, "--channel", "c1", "--from-beginning")
    assert res.exit_code == 1 and "the sink of c1 is running" in res.output, res.output
    host.stop()
    assert host.wait(30)
    ends = router.ends()
    expected = {db.id: expected_state(router.sent, recid=db.recid) for db in (c1, c2)}
    before = {db.id: _snapshot(db) for db in (c1, c2)}
    assert_tables_equal(c1, expected["c1"])

    # from an offset: every partition goes back to 100 and is applied again
    res = cli("replay", "--topology", path, "--channel", "c1", "--from-offset", "100", "--timeout", "60")
    assert res.exit_code == 0, res.output
    assert "rewound" in res.output and "caught up" in res.output
    assert _snapshot(c1) == before["c1"]
    assert stored_offsets(c1, router.topic) == ends
    sessions = sessions_of(c1)
    (rewind,) = [s for s in sessions if s.kind == "rewind"]
    assert rewind.offsets == {p: (100, e - 1) for p, e in ends.items()} and "from offset 100" in (rewind.detail or "")
    again = [s for s in sessions if s.kind == "batch" and s.session_id > rewind.session_id]
    assert sum(s.records for s in again) == sum(e - 100 for e in ends.values())
    assert sum(s.rows_upserted + s.rows_deleted for s in again) > 0  # applied again, not skipped as re-sends

    # from a timestamp (PostgreSQL channel): starts at the first record written at or after it
    when = dt.datetime.fromtimestamp(middle / 1000, dt.UTC).isoformat()
    starts, _ = replay_targets({"bootstrap.servers": kafka}, router.topic, from_timestamp_ms=parse_timestamp(when))
    assert all(0 < starts[p] < ends[p] for p in ends)
    res = cli("replay", "--topology", path, "--channel", "c2", "--from-timestamp", when, "--timeout", "60")
    assert res.exit_code == 0, res.output
    assert _snapshot(c2) == before["c2"]
    assert_tables_equal(c2, expected["c2"])
    (rewind,) = [s for s in sessions_of(c2) if s.kind == "rewind"]
    assert rewind.offsets == {p: (starts[p], ends[p] - 1) for p in ends}

    # from the beginning, rewind only; the regular sink re-applies it
    res = cli("replay", "--topology", path, "--channel", "c1", "--from-beginning", "--no-apply")
    assert res.exit_code == 0 and "rewound" in res.output, res.output
    assert stored_offsets(c1, router.topic) == {p: 0 for p in ends}
    host = run_host(topo, ["c1"])
    wait_until(lambda: caught_up(host, router), 60, "c1 again", lambda: host_state(host))
    assert _snapshot(c1) == before["c1"]
    assert host.sinks[0].totals.applied > 0 and host.sinks[0].totals.duplicates == router.resent
    host.stop()
    assert host.wait(30)

    # nothing to rewind: a position after the stored one never moves forward
    res = cli("replay", "--topology", path, "--channel", "c1", "--from-offset", "999999", "--no-apply")
    assert res.exit_code == 0 and "nothing to rewind" in res.output, res.output
    res = cli("replay", "--topology", path, "--channel", "c1", "--from-offset", "5", "--from-beginning")
    assert res.exit_code == 1 and "exactly one" in res.output
    res = cli("replay", "--topology", path, "--channel", "c1", "--from-timestamp", "yesterday")
    assert res.exit_code == 1 and "ISO 8601" in res.output


def test_parse_timestamp() -> None:
    assert parse_timestamp("1718000000000") == 1718000000000
    assert parse_timestamp("1718000000") == 1718000000000
    assert parse_timestamp("2024-06-10T06:13:20") == 1718000000000  # naive = UTC
    assert parse_timestamp("2024-06-10T06:13:20Z") == parse_timestamp("2024-06-10T08:13:20+02:00")
