"""Idle polls ask HQ for its tracking version only; a quiet table's position is still refreshed."""

from __future__ import annotations

from typing import Any

import pytest

from cdx.connectors.capture.connector import CaptureConnector
from cdx.connectors.capture.positions import load_positions
from cdx.connectors.capture.tracking import ChangeTracker, open_tracker
from cdx.kafka.config import client_config
from tests.capture.test_capture import _sql, hq  # noqa: F401  (the fixture)

pytestmark = pytest.mark.integration


class CountingTracker:
    """The real tracker, counting the table reads (``changes``)."""

    def __init__(self, inner: ChangeTracker) -> None:
        self.inner, self.reads = inner, 0

    def changes(self, *args: Any, **kwargs: Any) -> Any:
        self.reads += 1
        return self.inner.changes(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_idle_polls_read_no_table_until_hq_moves(hq) -> None:  # noqa: F811
    dialect, dsn, _path, topo = hq
    trackers: list[CountingTracker] = []

    def factory() -> Any:
        trackers.append(CountingTracker(open_tracker(dialect, dsn)))
        return trackers[-1]

    cap = CaptureConnector(topo, tracker_factory=factory, idle_position_interval=3600)
    cap.setup()
    for _ in range(3):  # the (empty) snapshots, then a first read of both tables
        cap.poll_once()
    reads = trackers[-1].reads
    assert [cap.poll_once() for _ in range(3)] == [0, 0, 0]
    assert trackers[-1].reads == reads  # nothing new at HQ: no table read
    _sql(dialect, dsn, ("INSERT INTO {notes} VALUES (1, 'one')", ()))
    assert cap.poll_once() == 1
    assert cap.poll_once() == 0
    reads = trackers[-1].reads
    cap.poll_once()
    assert trackers[-1].reads == reads

    # ITEMS stayed quiet while NOTES moved: its committed position lags; once the idle interval is
    # over, an idle poll reads again and writes it (a quiet table must not fall behind the cleanup)
    config = client_config(topo.kafka.bootstrap_servers, topo.kafka.security)
    lagging = load_positions(config, cap.positions_topic, topo.hq.name)
    assert lagging["dbo.ITEMS"].version < lagging["dbo.NOTES"].version
    cap.idle_position_interval = 0
    cap.poll_once()
    cap.close()
    positions = load_positions(config, cap.positions_topic, topo.hq.name)
    assert positions["dbo.ITEMS"].version >= positions["dbo.NOTES"].version
