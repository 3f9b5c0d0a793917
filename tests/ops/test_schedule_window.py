"""A distribution schedule window (``Mon-Fri 22:00-06:00``, Europe/Berlin) opening and closing during the test,
on a clock the test controls (``CDX_TEST_CLOCK_FILE``, read by the real ``cdx sink``): outside the window the
channel holds HQ's changes back while ``cdx status`` counts the lag; ``cdx schedule run-now`` applies what is
held, once; the window opening applies everything; the window crossing midnight stays open until 06:00; once it
closes, changes wait again. HQ and the channel on PostgreSQL."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.ops.helpers import HqWriter, cdx, channel_items, hq_items, ops_topology, prepare, roles, start_roles, status
from tests.pipeline.helpers import wait_for
from tests.upload.helpers import fresh_pg

pytestmark = [pytest.mark.integration, pytest.mark.ops_long]


def test_window_opens_and_closes_on_the_test_clock(tmp_path: Path, kafka: str, postgres_server: str) -> None:
    clock = tmp_path / "clock"
    clock.write_text("2026-12-02T12:00:00+01:00")  # Wednesday noon in Berlin: closed
    topo = ops_topology(tmp_path, kafka, fresh_pg(postgres_server, "window"), schedule="Mon-Fri 22:00-06:00",
                        timezone="Europe/Berlin", channel_dsn=fresh_pg(postgres_server, "window_s1"))
    prepare(topo)
    group = roles(tmp_path, topo, CDX_TEST_CLOCK_FILE=str(clock))
    hq = HqWriter(topo)
    hq.write(10)

    def held(n_items: int) -> None:
        """HQ's changes reached the group topic, the channel still has ``n_items``."""
        wait_for(lambda: None if (status(group)["lag_records"] or 0) > 0 else "nothing routed yet", group, 180,
                 "changes routed")
        time.sleep(3)
        assert len(channel_items(topo)) == n_items
        st = status(group)
        assert st["lag_records"] > 0 and st["schedules"] == {"DL": "closed"}, st

    def converged() -> None:
        wait_for(lambda: None if channel_items(topo) == hq_items(topo) else
                 f"channel {len(channel_items(topo))} of {len(hq_items(topo))} items", group, 120, "channel == HQ")

    try:
        cdx(group, "hq", "enable-tracking")
        start_roles(group, "capture", "router", "sink")
        held(0)
        cdx(group, "schedule", "run-now", "DL")
        converged()
        before = len(channel_items(topo))
        hq.write(10)
        held(before)  # run-now applied once: later changes wait again
        clock.write_text("2026-12-02T23:30:00+01:00")  # Wednesday 23:30: open
        converged()
        assert status(group)["schedules"] == {"DL": "open"}
        clock.write_text("2026-12-03T05:30:00+01:00")  # Thursday 05:30: Wednesday's window, still open
        hq.write(5)
        converged()
        clock.write_text("2026-12-03T06:30:00+01:00")  # closed
        time.sleep(2.5)  # the sink reads its clock and controls between batches, at most every second
        before = len(channel_items(topo))
        hq.write(5)
        held(before)
    finally:
        group.stop_all()
