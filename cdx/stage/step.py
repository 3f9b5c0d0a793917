"""One attempt at one batch: for a host that drives many stages from a few shared threads.

:func:`cdx.stage.loop.run_stage` gives a stage its own thread and waits out its back-off itself, and
:func:`cdx.stage.loop.apply_batch` retries in place. A host of many stages on a small worker pool (the
channel sink host: 1,000 channels on 4 threads) must not let one stage's back-off hold a worker: it
calls :func:`apply_once` and schedules the retry itself, with :class:`cdx.stage.backoff.Backoff`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from cdx.errors import RetriableError
from cdx.stage import metrics as m
from cdx.stage.contract import P, R, Stage, T
from cdx.stage.loop import _Loop


def apply_once(stage: Stage[R, T, P], records: Sequence[R]) -> None:
    """Write ``records`` (polled by the caller) once, exactly as the loop writes a batch: records that
    ``decode`` or the target refuses are dead-lettered (a refused batch is split down to the refused
    record), each part in one target transaction with its position, the same ``cdx_stage_*`` metrics.

    A ``RetriableError`` or any other failure: rolled back, ``on_failure`` called, counted, re-raised.
    The caller then rewinds its source and retries when its back-off says so; the source and target
    stay open (``stop`` does not apply: the batch is never cut in two)."""
    loop = _Loop(stage, threading.Event())
    started = time.monotonic()
    try:
        loop._apply(records)
    except Exception as exc:
        m.ERRORS.labels(stage.name, m.RETRIABLE if isinstance(exc, RetriableError) else m.FATAL).inc()
        loop._failed(records, exc)
        raise
    m.BATCH_SECONDS.labels(stage.name).observe(time.monotonic() - started)
