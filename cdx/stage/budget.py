"""How many in-process recoveries a stage may make before it gives up: ``LIMIT`` failures in ``WINDOW`` seconds.

A broker failover costs a transactional stage (capture, router, channel upload) one or two lost producers
(the transaction coordinator of its ``transactional.id`` moves and bumps the epoch). The stage recovers in
process: it drops what the lost transaction held, re-creates its producer and goes on from what is
committed. A cause that does not go away (a twin process with the same transactional id that keeps fencing
this one, a broken cluster) must not turn into an endless loop: after more than ``limit`` failures within
``window`` seconds the stage stops with a ``FatalError`` and its supervisor (systemd, Kubernetes) restarts it,
which an operator sees.

Usage::

    budget = FailureBudget("capture")
    except ProducerLost as exc:
        budget.spend(exc)        # raises FatalError once the budget is exhausted
        ... recreate the producer ...
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from cdx.errors import FatalError

LIMIT = 10
WINDOW = 600.0


class FailureBudget:
    """At most ``limit`` failures within any ``window`` seconds; the next one raises ``FatalError``."""

    def __init__(self, what: str, *, limit: int = LIMIT, window: float = WINDOW,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.what, self.limit, self.window, self._clock = what, limit, window, clock
        self.failures: deque[float] = deque()

    def spend(self, cause: BaseException) -> int:
        """Count one failure; the number within the window, or ``FatalError`` (from ``cause``) past the limit."""
        now = self._clock()
        self.failures.append(now)
        while self.failures and self.failures[0] < now - self.window:
            self.failures.popleft()
        if len(self.failures) > self.limit:
            raise FatalError(f"{self.what}: {len(self.failures)} failures within {self.window:.0f} s, the last: "
                             f"{cause}; stopping so that the supervisor restarts the process") from cause
        return len(self.failures)
