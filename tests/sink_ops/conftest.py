"""Fixtures of the sink-operations tests: in-process sink hosts that are always stopped."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from cdx.connectors.sink.host import SinkHost
from cdx.connectors.sink.runner import SinkSettings
from cdx.topology.root import Topology

FAST = SinkSettings(batch_size=2000, poll_timeout=0.1, backoff_initial=0.1, backoff_max=1.0)


@pytest.fixture
def run_host() -> Iterator[Callable[..., SinkHost]]:
    """``run_host(topology, ids=None, **settings)``: a started ``SinkHost``, stopped after the test."""
    hosts: list[SinkHost] = []

    def start(topology: Topology, ids: list[str] | None = None, **settings: Any) -> SinkHost:
        host = SinkHost(topology, ids, SinkSettings(**{**FAST.__dict__, **settings}))
        host.setup()
        host.start()
        hosts.append(host)
        return host

    yield start
    for h in hosts:
        h.stop()
    for h in hosts:
        assert h.wait(30), "sink host did not stop in 30s"
