"""``Workers``: a small, fixed pool of threads that step many channel sinks.

Contract
- A sink is queued at most once (``ChannelSink.claim``) and stepped by one worker at a time, so its
  batches are applied one at a time, in order; after a step it is queued again at once when it has
  more to do (``ChannelSink.release``).
- ``kick(sink)``: queue it when it is not queued already (the feed calls it after delivering records).
- A ticker thread queues the sinks whose retry or housekeeping time came (``ChannelSink.has_work``).
- A slow sink (a long resync, a database that takes seconds to answer) holds one worker; the others
  go on with the other sinks.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable

from cdx.connectors.sink.runner import ChannelSink

TICK = 0.5
"""Seconds between two looks of the ticker at every sink's timers."""


class Workers:
    def __init__(self, threads: int, sinks: Callable[[], list[ChannelSink]], stop: threading.Event) -> None:
        self.size = max(1, threads)
        self.sinks = sinks
        self.stop = stop
        self._queue: queue.SimpleQueue[ChannelSink | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for i in range(self.size):
            t = threading.Thread(target=self._work, name=f"sink-worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        t = threading.Thread(target=self._tick, name="sink-ticker", daemon=True)
        t.start()
        self._threads.append(t)

    def kick(self, sink: ChannelSink) -> None:
        if sink.claim():
            self._queue.put(sink)

    def alive(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def join(self, timeout: float | None = None) -> None:
        """After ``stop`` is set: wait for the current steps to end."""
        for _ in self._threads:
            self._queue.put(None)
        deadline = None if timeout is None else time.monotonic() + timeout
        for t in self._threads:
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))

    def _work(self) -> None:
        while not self.stop.is_set():
            sink = self._queue.get()
            if sink is None:
                return
            try:
                sink.step()
            finally:
                if sink.release(time.monotonic()):
                    self._queue.put(sink)

    def _tick(self) -> None:
        while not self.stop.wait(TICK):
            now = time.monotonic()
            for sink in self.sinks():
                if sink.has_work(now):
                    self.kick(sink)
