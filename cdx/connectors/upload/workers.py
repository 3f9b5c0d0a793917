"""One thread per channel worker in one process: the base of ``UploadConnector`` and ``OfflineSync``.

- ``start(worker)`` runs ``worker.run()`` in a daemon thread named ``<kind>-<channel>`` (the worker
  records its failure in ``worker.error``).
- ``run_workers()`` starts every worker, then waits until all ended; with ``live`` it goes on until
  ``stop()``, taking new topology revisions meanwhile (``reload``). A worker that failed stops the
  others; the first one failed is returned for the caller to raise.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Protocol

from cdx.topology import Topology
from cdx.topology.live import LiveTopology
from cdx.topology.model import Channel

log = logging.getLogger("cdx.upload")


class Worker(Protocol):
    @property
    def channel(self) -> Channel: ...

    @property
    def error(self) -> BaseException | None: ...

    @property
    def _stop(self) -> threading.Event: ...

    def run(self) -> None: ...


class ChannelThreads:
    """See the module docstring; subclasses say ``kind`` and which workers run (``running``)."""

    kind = "worker"

    def __init__(self) -> None:
        self._stop = threading.Event()
        self.threads: dict[str, threading.Thread] = {}
        self.live: LiveTopology | None = None
        """Set by the CLI: ``run_workers`` then takes new topology revisions (``reload``)."""

    def running(self) -> Sequence[Worker]:
        raise NotImplementedError

    def reload(self, topology: Topology) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        self._stop.set()
        for w in self.running():
            w._stop.set()

    def start(self, worker: Worker) -> None:
        """Run ``worker`` in a thread of its own."""
        if self._stop.is_set():
            worker._stop.set()
        key = worker.channel.id
        t = threading.Thread(target=_guard, args=(worker,), name=f"{self.kind}-{key}", daemon=True)
        self.threads[key] = t
        t.start()

    def run_workers(self) -> Worker | None:
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


def _guard(worker: Worker) -> None:
    try:
        worker.run()
    except BaseException as exc:  # recorded in worker.error; run_workers() stops the others
        log.debug("worker for %s ended: %r", worker.channel.id, exc)
