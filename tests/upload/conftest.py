"""Fixtures of the upload tests: the upload connector and the HQ upload sink run in threads."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from cdx.connectors.upload.sink import SinkOptions, UploadSink
from cdx.connectors.upload.uploader import UploadConnector, UploadOptions
from cdx.topology import Topology
from tests.upload.helpers import Background

FAST = UploadOptions(poll_interval=0.05, gap_grace=0.5, max_backoff=1.0)


class Running:
    """Upload connector and HQ sink in threads of the test process."""

    def __init__(self, topo: Topology, channels: list[str] | None = None, sink: bool = True) -> None:
        self.upload = UploadConnector(topo, channels, FAST)
        self.upload.setup()
        self.threads = [Background(self.upload.run, "upload")]
        self.sink: UploadSink | None = None
        if sink:
            self.sink = UploadSink(topo, SinkOptions(poll_timeout=0.1, unknown_schema_wait=2.0))
            self.sink.setup()
            self.threads.append(Background(self.sink.run, "sink"))

    def check(self) -> None:
        for t in self.threads:
            if not t.thread.is_alive():
                t.join()

    def stop(self) -> None:
        self.upload.stop()
        if self.sink is not None:
            self.sink.stop()
        for t in self.threads:
            t.join(60)


@pytest.fixture
def running() -> Iterator[Callable[..., Running]]:
    """``running(topology, channels=None, sink=True)``: upload (and sink) threads, stopped after the test."""
    started: list[Running] = []

    def start(topo: Topology, channels: list[str] | None = None, sink: bool = True) -> Running:
        r = Running(topo, channels, sink)
        started.append(r)
        return r

    yield start
    for r in started:
        r.stop()
