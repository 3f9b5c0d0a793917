"""``cdx channel pause|resume`` under load: the real roles run (capture, router, sink, channel upload, HQ
upload sink) while HQ keeps changing INVENTTABLE and the register keeps selling. Paused, the channel does
not move either way (its items stay as they were, HQ receives no sale of it) and ``cdx status`` shows it
paused with a growing lag; a sink restarted meanwhile stays paused; resumed, the channel converges to HQ's
items and HQ holds every sale once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.ops.helpers import (
    HqWriter,
    Register,
    cdx,
    channel_items,
    digest,
    hq_items,
    ops_topology,
    prepare,
    roles,
    start_roles,
    status,
)
from tests.pipeline.helpers import wait_for
from tests.upload.helpers import assert_channel_at_hq, fresh_pg, hq_rows, summary

pytestmark = [pytest.mark.integration, pytest.mark.ops_long]


def test_pause_holds_both_directions_and_resume_catches_up(tmp_path: Path, kafka: str, postgres_server: str) -> None:
    topo = ops_topology(tmp_path, kafka, fresh_pg(postgres_server, "pause"))
    prepare(topo)
    group = roles(tmp_path, topo)
    hq, register = HqWriter(topo), Register(topo)
    try:
        cdx(group, "hq", "enable-tracking")
        start_roles(group, "capture", "router", "sink", "upload", "hq-sink")
        hq.start()
        register.start()
        wait_for(lambda: None if len(channel_items(topo)) >= 20 and summary(hq_rows(topo, "s1"))["header"][0] >= 10
                 else "items or sales not flowing yet", group, 180, "both directions flowing")
        cdx(group, "channel", "pause", "s1")
        cdx(group, "channel", "pause", "s1")  # idempotent
        time.sleep(4)  # takes effect between two batches; in-flight uploads land at HQ
        items, sales = digest(channel_items(topo)), summary(hq_rows(topo, "s1"))
        group.stop("sink")  # a restarted sink stays paused
        start_roles(group, "sink")
        time.sleep(8)
        assert digest(channel_items(topo)) == items, "the paused channel applied HQ changes"
        assert summary(hq_rows(topo, "s1")) == sales, "sales of the paused channel reached HQ"
        st = status(group)
        assert st["paused"] and st["lag_records"] > 0
        cdx(group, "channel", "resume", "s1")
        time.sleep(2)
        hq.stop()
        register.stop()
        wait_for(lambda: None if channel_items(topo) == hq_items(topo) else
                 f"channel {len(channel_items(topo))} items, HQ {len(hq_items(topo))}", group, 180, "items converge")

        def sales_in() -> str | None:
            try:
                assert_channel_at_hq(topo, "s1")
                return None
            except AssertionError as e:
                return str(e)[:200]

        wait_for(sales_in, group, 180, "every sale at HQ once")
        assert status(group)["paused"] is None
    finally:
        hq.stop()
        register.stop()
        group.stop_all()
