"""HQ failing in the middle of a run: the stage loop rolls back, reconnects, re-reads the committed
positions and goes on (``run``, not ``poll_once``); every change is on the topic once."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from cdx.connectors.capture.connector import CaptureConnector
from cdx.connectors.capture.tracking import ChangeTracker, open_tracker
from cdx.errors import RetriableError
from tests.capture.helpers import make_hq, read_table, write_topology
from tests.capture.test_capture import _sql

pytestmark = pytest.mark.integration


class FlakyTracker:
    """The real tracker; its ``changes`` fails while ``failures`` is above 0 (HQ not answering)."""

    failures = 0

    def __init__(self, inner: ChangeTracker) -> None:
        self.inner = inner

    def changes(self, *args: Any, **kwargs: Any) -> Any:
        if FlakyTracker.failures > 0:
            FlakyTracker.failures -= 1
            raise RetriableError("HQ database error: connection refused (test)")
        return self.inner.changes(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_hq_failures_are_retried_from_what_is_committed(tmp_path: Path, kafka: str) -> None:
    dsn = f"sqlite:///{tmp_path}/hq.db"
    make_hq("sqlite", dsn)
    _path, topo = write_topology(tmp_path, kafka, "sqlite", dsn)
    tracker = open_tracker("sqlite", dsn)
    tracker.enable(["dbo.ITEMS", "dbo.NOTES"])
    tracker.conn.close()
    opened: list[FlakyTracker] = []

    def factory() -> Any:
        opened.append(FlakyTracker(open_tracker("sqlite", dsn)))
        return opened[-1]

    cap = CaptureConnector(topo, tracker_factory=factory)
    cap.setup()
    runner = threading.Thread(target=cap.run, daemon=True)
    runner.start()
    try:
        for batch in range(5):
            _sql("sqlite", dsn, *[("INSERT INTO {notes} VALUES ({p}, {p})", (batch * 10 + i, "x")) for i in range(10)])
            FlakyTracker.failures = 2
            # the next batch once this one is published: failures that kept coming while the back-off doubled
            # left the last wait at 8 s
            deadline = time.monotonic() + 120
            while len(read_table(topo, "NOTES")) < 10 * (batch + 1) and time.monotonic() < deadline:
                time.sleep(0.2)
    finally:
        cap.stop()
        runner.join(60)
    assert not runner.is_alive()
    records = read_table(topo, "NOTES")
    ids = [k["ID"] for k, env in records if env is not None]
    assert sorted(ids) == list(range(50))  # each once
    assert len(opened) > 1  # reconnected after the failures
