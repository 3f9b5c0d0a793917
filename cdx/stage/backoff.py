"""The one back-off policy of every cdx process.

A retriable failure (a database or broker unreachable, a transaction that could not commit) is retried after
a delay that doubles from ``initial`` up to ``maximum``; a success resets it. Jitter (up to ``jitter`` of the
delay, default 10 %) keeps hundreds of channel sinks from reconnecting to HQ or Kafka in the same instant.

Usage::

    backoff = Backoff(initial=0.5, maximum=30)
    while not stop.is_set():
        try:
            work()
            backoff.reset()
        except RetriableError as exc:
            log.warning("...; retrying in %.1fs", backoff.peek())
            if backoff.wait(stop):      # sleeps, returns True when stop was set meanwhile
                break

The policy holds no thread and no clock of its own: ``wait`` sleeps on the caller's event, so SIGTERM ends
the wait at once.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field

DEFAULT_INITIAL = 0.5
DEFAULT_MAXIMUM = 30.0


@dataclass
class Backoff:
    """Exponential back-off: ``initial``, doubling, capped at ``maximum`` seconds (plus up to ``jitter``)."""

    initial: float = DEFAULT_INITIAL
    maximum: float = DEFAULT_MAXIMUM
    jitter: float = 0.1
    _delay: float = field(init=False, repr=False)
    attempts: int = field(init=False, default=0)
    """Failures since the last success (or since creation)."""

    def __post_init__(self) -> None:
        if self.initial <= 0 or self.maximum < self.initial:
            raise ValueError(f"back-off needs 0 < initial <= maximum (got {self.initial}, {self.maximum})")
        self._delay = self.initial

    def peek(self) -> float:
        """The delay the next ``next()``/``wait()`` will use, without jitter (for log lines)."""
        return self._delay

    def next(self) -> float:
        """The delay to sleep now (with jitter); the one after it doubles, up to ``maximum``."""
        delay = self._delay
        self._delay = min(self._delay * 2, self.maximum)
        self.attempts += 1
        return delay + random.uniform(0, delay * self.jitter) if self.jitter else delay

    def wait(self, stop: threading.Event) -> bool:
        """Sleep ``next()`` seconds on ``stop``; True when ``stop`` was set (the caller should give up)."""
        return stop.wait(self.next())

    def reset(self) -> None:
        """After a success: the next failure waits ``initial`` again."""
        self._delay = self.initial
        self.attempts = 0
