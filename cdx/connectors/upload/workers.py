"""One thread per channel worker (``worker.run()``; its failure kept in ``worker.error``): the base of
``UploadConnector`` and ``OfflineSync``."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from cdx.topology import Topology
from cdx.topology.live import LiveTopology
from cdx.topology.model import Channel

log = logging.getLogger("cdx.upload")


class ChannelThreads:
    """Subclasses say ``kind`` (thread names ``<kind>-<channel>``) and which workers run (``running``)."""

    kind = "worker"

    def __init__(self) -> None:
        self._stop = threading.Event()
        self.threads: dict[str, threading.Thread] = {}
        self.live: LiveTopology | None = None
        """Set by the CLI: ``run_workers`` then takes new topology revisions (``reload``)."""

    def running(self) -> Sequence[Any]:
        raise NotImplementedError

    def reload(self, topology: Topology) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        self._stop.set()
        for w in self.running():
            w._stop.set()

    def start(self, worker: Any) -> None:
        """Run ``worker`` in a thread of its own."""
        if self._stop.is_set():
            worker._stop.set()
        key = worker.channel.id
        t = threading.Thread(target=_guard, args=(worker,), name=f"{self.kind}-{key}", daemon=True)
        self.threads[key] = t
        t.start()

    def swap(self, channels: list[Channel], leaving: Sequence[Any], new: Callable[[Channel], Any]) -> list[Any]:
        """Take a new topology revision's ``channels``: the ``leaving`` workers finish their current transaction
        and stop (blocks until they ended), every channel without a running worker gets a new one (``new``),
        started at once; returns the workers now running (others are not touched)."""
        for w in leaving:
            w._stop.set()
        for w in leaving:
            self.threads.pop(w.channel.id).join()
        workers = [w for w in self.running() if w not in leaving]
        have = {w.channel.id for w in workers}
        for c in channels:
            if c.id not in have:
                workers.append(new(c))
                self.start(workers[-1])
        if self.live is not None:
            self.live.set_instances([c.id for c in channels])
        return workers

    def run_workers(self) -> Any:
        """Start every worker and wait until all ended (with ``live``: until ``stop()``, taking new topology
        revisions meanwhile); one failing stops the others. Returns the first failed worker, if any."""
        for w in self.running():
            self.start(w)
        while any(t.is_alive() for t in self.threads.values()) or (self.live is not None
                                                                     and not self._stop.is_set()):
            if self.live is not None and not self._stop.is_set():
                self.live.offer(self.reload)
            for t in list(self.threads.values()):
                t.join(0.2)
            if not self.threads:
                self._stop.wait(0.5)
            if any(w.error is not None for w in self.running()):
                self.stop()
        for t in self.threads.values():
            t.join()
        return next((w for w in self.running() if w.error is not None), None)


def _guard(worker: Any) -> None:
    try:
        worker.run()
    except BaseException as exc:  # recorded in worker.error; run_workers() stops the others
        log.debug("worker for %s ended: %r", worker.channel.id, exc)
