"""An interval schedule (``every 15m``) on a clock the test controls (``CDX_TEST_CLOCK_FILE``): the real sink
holds what arrives between ticks (also across a restart within the tick: the tick is recorded in the channel
database) and applies it at the next tick."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.ops.helpers import HqWriter, channel_items, hq_items, ops_topology, prepare, roles, start_roles, status
from tests.ops.helpers import cdx as run_cdx
from tests.pipeline.helpers import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.ops_long]


def test_interval_releases_at_each_tick(tmp_path: Path, kafka: str) -> None:
    clock = tmp_path / "clock"
    clock.write_text("2026-12-02T10:07:00+00:00")
    topo = ops_topology(tmp_path, kafka, f"sqlite:///{tmp_path}/hq.db", schedule="every 15m")
    prepare(topo)
    group = roles(tmp_path, topo, CDX_TEST_CLOCK_FILE=str(clock))
    hq = HqWriter(topo)
    try:
        run_cdx(group, "hq", "enable-tracking")
        start_roles(group, "capture", "router", "sink")
        hq.write(10)  # the sink's first tick (10:00) only starts the count: nothing released
        wait_for(lambda: None if (status(group)["lag_records"] or 0) > 0 else "nothing routed", group, 180, "routed")
        group.stop("sink")  # a restart within the same tick releases nothing more
        start_roles(group, "sink")
        time.sleep(5)
        assert channel_items(topo) == {} and status(group)["schedules"] == {"DL": "every 900s"}
        clock.write_text("2026-12-02T10:15:00+00:00")  # the next tick
        wait_for(lambda: None if channel_items(topo) == hq_items(topo) else "not released", group, 120,
                 "released at the tick")
        before = len(channel_items(topo))
        hq.write(5)
        wait_for(lambda: None if (status(group)["lag_records"] or 0) > 2 else "nothing routed", group, 120, "routed")
        time.sleep(3)
        assert len(channel_items(topo)) == before
    finally:
        group.stop_all()
