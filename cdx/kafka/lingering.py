"""Short-lived admin clients that are not destroyed while a request of theirs may still be pending.

librdkafka 2.x aborts the whole process (``rd_kafka_enq_once_del_source_return: Assertion
'eonce->refcnt > 0' failed``) when an admin client is destroyed while one of its requests still waits
for a broker to come back: seen in the broker-failover test, where a channel sink's admin call
(``describe_configs``) timed out during a broker's outage and the client was dropped right after. A
collected client also never completes its futures.

``admin_client(config)`` is the one way to open a short-lived ``AdminClient``: when the block ends with an
exception (a timeout, a broker error) the client is kept for ``LINGER_S`` seconds more, until its
requests have surely timed out inside librdkafka too, then dropped on a later call from a caller's thread
(never from librdkafka's own threads). A block that ends normally drops the client at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from confluent_kafka.admin import AdminClient

LINGER_S = 90.0

_lock = threading.Lock()
_lingering: list[tuple[float, AdminClient]] = []


def sweep(now: float | None = None) -> int:
    """Drop the clients whose time is up; how many are still kept."""
    now = time.monotonic() if now is None else now
    with _lock:
        expired = [c for t, c in _lingering if t <= now]
        _lingering[:] = [(t, c) for t, c in _lingering if t > now]
        kept = len(_lingering)
    del expired  # the last references go here, on the caller's thread
    return kept


@contextmanager
def admin_client(config: Mapping[str, Any], linger: float = LINGER_S) -> Iterator[AdminClient]:
    """A short-lived ``AdminClient`` for the block; kept ``linger`` seconds more when the block fails."""
    sweep()
    admin = AdminClient(dict(config))
    try:
        yield admin
    except BaseException:
        with _lock:
            _lingering.append((time.monotonic() + linger, admin))
        raise
