"""Mixed workloads end with every channel table equal to the expected rows; re-sends are skipped;
row filters; offline registers; parent/child order under foreign keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdx.connectors.sink.host import SinkHost
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


def caught_up(host: SinkHost, router: FakeRouter) -> bool:
    ends = router.ends()
    return all(all(s.state.offsets.get(p, 0) >= end for p, end in ends.items() if end) for s in host.sinks)


def test_mixed_workload_sqlite_and_postgresql(tmp_path: Path, kafka: str, postgres_server: str, run_host) -> None:
    c1 = sqlite_db(tmp_path, "c1", recid=1)
    c1.registers.append(sqlite_db(tmp_path, "c1r1"))
    c2 = pg_db(postgres_server, "c2", recid=2)
    _, topo = write_topology(tmp_path, kafka, [c1, c2])
    router = FakeRouter(topo)
    workload(router, 4000, seed=3, keys=300, resend_every=250)
    router.flush()
    host = run_host(topo)
    wait_until(lambda: caught_up(host, router), 60, "sinks to catch up",
               lambda: str([(s.name, s.status, s.last_error, s.state.offsets) for s in host.sinks]))
    assert router.resent > 0
    for sink in host.sinks:
        assert sink.status == "running", (sink.name, sink.last_error)
        assert sink.totals.duplicates == router.resent, sink.name
        assert sink.totals.dead_lettered == 0
    by_id = {s.name: s for s in host.sinks}
    assert by_id["c1"].totals.filtered > 0 and by_id["c2"].totals.filtered > 0
    assert_tables_equal(c1, expected_state(router.sent, recid=1))
    assert_tables_equal(c1.registers[0], expected_state(router.sent, recid=1))
    assert_tables_equal(c2, expected_state(router.sent, recid=2))

    # more changes while running: applied incrementally
    workload(router, 1000, seed=4, keys=300, resend_every=100)
    router.flush()
    wait_until(lambda: caught_up(host, router), 60, "sinks to catch up again")
    for db, recid in ((c1, 1), (c1.registers[0], 1), (c2, 2)):
        assert_tables_equal(db, expected_state(router.sent, recid=recid))
