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

import logging
import queue
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from cdx.connectors.sink.runner import ChannelSink

log = logging.getLogger("cdx.sink")

TICK = 0.5
"""Seconds between two looks of the ticker at every sink's timers."""
STOP_WARN_EVERY = 60.0
"""Seconds between two warnings naming a host thread that has not ended after the stop."""


def where(thread: threading.Thread, depth: int = 8) -> str:
    """Where ``thread`` is now: its innermost Python frames, innermost first (what a stack dump shows; none
    while it is past its Python code, in the interpreter's or a C library's clean-up of the thread)."""
    frame = sys._current_frames().get(thread.ident or -1)
    if frame is None:
        return "no Python frame (past its Python code)"
    frames = traceback.extract_stack(frame)[-depth:]
    return " <- ".join(f"{f.name} ({Path(f.filename).name}:{f.lineno})" for f in reversed(frames))


def join_naming(thread: threading.Thread, deadline: float | None) -> None:
    """Join ``thread`` until ``deadline`` (None: until it ends), warning every ``STOP_WARN_EVERY`` seconds
    with its name and where it is while it has not ended, so a stop that hangs says where."""
    started = time.monotonic()
    while thread.is_alive():
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            return
        thread.join(STOP_WARN_EVERY if left is None else min(left, STOP_WARN_EVERY))
        if thread.is_alive() and (left is None or left > STOP_WARN_EVERY):
            log.warning("sink host: thread %s has not ended %.0f s after the stop; at %s", thread.name,
                        time.monotonic() - started, where(thread))


class Workers:
    def __init__(self, threads: int, sinks: Callable[[], list[ChannelSink]], stop: threading.Event,
                 label: str = "sink") -> None:
        self.size = max(1, threads)
        self.label = label
        """Prefix of the thread names (a host's own: several hosts may run in one process)."""
        self.sinks = sinks
        self.stop = stop
        self._queue: queue.SimpleQueue[ChannelSink | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for i in range(self.size):
            t = threading.Thread(target=self._work, name=f"{self.label}-worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        t = threading.Thread(target=self._tick, name=f"{self.label}-ticker", daemon=True)
        t.start()
        self._threads.append(t)

    def kick(self, sink: ChannelSink) -> None:
        if sink.claim():
            self._queue.put(sink)

    def threads(self) -> list[threading.Thread]:
        return list(self._threads)

    def alive(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def join(self, timeout: float | None = None) -> None:
        """After ``stop`` is set: wait for the current steps to end (``join_naming``: a step that does not
        end is named every minute)."""
        for _ in self._threads:
            self._queue.put(None)
        deadline = None if timeout is None else time.monotonic() + timeout
        for t in self._threads:
            join_naming(t, deadline)

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
