"""Best-effort clean-up of resources being discarded (close a connection, roll back, abort).

A failure while discarding a resource must not hide the error that made us discard it, and
must not stop the rest of the clean-up; it is still worth a debug line. Every such step in cdx
goes through :func:`quietly`, so no code swallows exceptions silently.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger("cdx.cleanup")


def quietly(step: Callable[[], object], what: str, logger: logging.Logger | None = None) -> None:
    """Run ``step``; an ``Exception`` is logged at debug level as ``what`` and not raised.

    ``BaseException`` (KeyboardInterrupt, SystemExit) still propagates."""
    try:
        step()
    except Exception as exc:
        (logger or log).debug("%s failed (ignored: the resource is being discarded): %s", what, exc)
