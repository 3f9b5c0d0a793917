"""The loop every stage runs: poll a batch, write it with its position in one target transaction, repeat.

:func:`run_stage` owns what every hop used to do on its own (see :mod:`cdx.stage.contract` for what
source and target promise):

- **Batching**: ``poll(max_records, max_wait)``; one target transaction per batch.
- **Retriable errors** (``RetriableError`` from the source, ``decode`` or the target): the transaction
  is rolled back, ``on_failure`` records it, the source rewinds to the last committed position and
  the loop waits :class:`cdx.stage.backoff.Backoff` (doubling up to ``max_backoff``, reset by the next
  commit). Opening the target and then the source is retried the same way.
- **Skippable errors**: a record ``decode`` refuses goes to ``dead_letter`` and the rest of its batch is
  written. A batch the *target* refuses is rolled back and split in halves, down to the one record it
  refuses: that record goes to ``dead_letter`` and its position is committed alone. The records around
  it are written once, in order.
- **Fatal errors** (``FatalError`` and anything unexpected): rolled back, ``on_failure``, the source and
  target are closed and the error propagates with its message.
- **Clean shutdown**: ``stop`` (set by SIGTERM/SIGINT, see :func:`cdx.stage.signals.stop_on_signals`) is checked between
  batches and ends a back-off wait at once; the batch being written is finished (or rolled back by a
  failure), never cut in two. Source and target are closed on the way out.
- **Metrics** (:mod:`cdx.stage.metrics`, the same names for every stage) and **progress**: a log line
  every ``progress_every`` seconds with the records, batches and dead letters since the last one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Generic

from cdx.cleanup import quietly
from cdx.errors import RetriableError, SkippableError
from cdx.stage import metrics as m
from cdx.stage.backoff import Backoff
from cdx.stage.contract import P, R, Stage, T, _identity
from cdx.stage.signals import stop_on_signals

log = logging.getLogger("cdx.stage")


@dataclass
class StageStats:
    """What a run of the loop did (committed batches only)."""

    batches: int = 0
    records: int = 0
    """Source records in committed batches (written or dead-lettered)."""
    dead_lettered: int = 0
    retries: int = 0


def run_stage(stage: Stage[R, T, P], stop: threading.Event, handle_signals: bool = False) -> StageStats:
    """Run ``stage`` until ``stop`` is set (or a fatal error); see the module docstring.

    With ``handle_signals`` (and on the main thread) SIGTERM and SIGINT set ``stop`` while it runs."""
    with stop_on_signals(stop.set) if handle_signals else nullcontext():
        return _Loop(stage, stop).run()


def apply_batch(stage: Stage[R, T, P], records: Sequence[R], stop: threading.Event) -> bool:
    """Write ``records`` (polled by the caller rather than by the loop) as the loop would: skippable
    records dead-lettered, retriable errors retried with back-off until committed (True) or ``stop`` is
    set (False: nothing committed); a fatal error propagates. The source and target stay open."""
    loop = _Loop(stage, stop)
    while True:
        try:
            loop._apply(records)
            return True
        except RetriableError as exc:
            loop._retry(records, exc)
            if stop.is_set():
                return False
        except Exception as exc:
            loop._failed(records, exc)
            raise


class _Loop(Generic[R, T, P]):
    def __init__(self, stage: Stage[R, T, P], stop: threading.Event) -> None:
        self.stage, self.stop = stage, stop
        o = stage.options
        self.backoff = Backoff(o.initial_backoff, o.max_backoff)
        self.stats = StageStats()
        self._letters = 0
        self._window = StageStats()
        self._next_progress = time.monotonic() + o.progress_every

    def run(self) -> StageStats:
        s = self.stage
        m.UP.labels(s.name).set(1)
        try:
            if self._open():
                while not self.stop.is_set():
                    self._step()
        except BaseException as exc:
            if isinstance(exc, Exception):
                m.ERRORS.labels(s.name, m.FATAL).inc()
                log.error("%s stopped: %s", s.name, exc)
            raise
        finally:
            m.UP.labels(s.name).set(0)
            quietly(s.source.close, f"{s.name}: closing the source", log)
            quietly(s.target.close, f"{s.name}: closing the target", log)
        log.info("%s stopped after %d batches (%d records, %d dead-lettered)", s.name, self.stats.batches,
                 self.stats.records, self.stats.dead_lettered)
        return self.stats

    def _open(self) -> bool:
        """Open the target, then the source (which may read its positions from the target)."""
        for step, what in ((self.stage.target.open, "target"), (self.stage.source.open, "source")):
            while True:
                try:
                    step()
                    break
                except RetriableError as exc:
                    m.ERRORS.labels(self.stage.name, m.RETRIABLE).inc()
                    log.warning("%s: cannot open the %s (%s); retrying in %.1fs", self.stage.name, what, exc,
                                self.backoff.peek())
                    if self.backoff.wait(self.stop):
                        return False
        self.backoff.reset()
        return True

    def _step(self) -> None:
        s, o = self.stage, self.stage.options
        records: Sequence[R] = ()
        try:
            if s.between_batches is not None:
                s.between_batches()
            records = s.source.poll(o.max_records, o.max_wait)
            if records:
                started = time.monotonic()
                self._apply(records)
                m.BATCH_SECONDS.labels(s.name).observe(time.monotonic() - started)
                self.backoff.reset()
        except RetriableError as exc:
            self._retry(records, exc)
        except Exception as exc:
            self._failed(records, exc)
            raise
        self._progress()

    def _retry(self, records: Sequence[R], exc: RetriableError) -> None:
        s = self.stage
        m.ERRORS.labels(s.name, m.RETRIABLE).inc()
        self.stats.retries += 1
        self._failed(records, exc)
        log.warning("%s: batch failed, retrying in %.1fs: %s", s.name, self.backoff.peek(), exc)
        s.source.rewind()
        self.backoff.wait(self.stop)

    def _failed(self, records: Sequence[R], exc: Exception) -> None:
        on_failure = self.stage.on_failure
        if records and on_failure is not None:
            quietly(lambda: on_failure(records, exc), f"{self.stage.name}: recording a failed batch", log)

    def _apply(self, records: Sequence[R]) -> None:
        """``records`` in one transaction; a batch the target refuses is split in halves down to the one
        record it refuses, which is dead-lettered and its position committed alone."""
        try:
            items = self._decode(records)
        except BaseException as exc:
            self.stage.target.abort(exc)  # drops the letters it holds: the batch is decoded again
            raise
        try:
            self._commit(records, items)
        except SkippableError as exc:
            if len(records) > 1:
                log.warning("%s: a record of a batch of %d is refused (%s); isolating it", self.stage.name,
                            len(records), exc)
                mid = len(records) // 2
                self._apply(records[:mid])
                self._apply(records[mid:])
                return
            self._letters = 0
            self._dead(records[0], exc)
            self._commit(records, [])

    def _decode(self, records: Sequence[R]) -> list[T]:
        self._letters = 0
        if self.stage.decode is _identity:  # no call per record (the router: ~0.2 us of 12 us a record)
            return list(records)  # type: ignore[arg-type]
        items = []
        for r in records:
            try:
                items.append(self.stage.decode(r))
            except SkippableError as exc:
                self._dead(r, exc)
        return items

    def _dead(self, record: R, exc: SkippableError) -> None:
        self._letters += 1
        self.stage.dead_letter(record, exc)

    def _commit(self, records: Sequence[R], items: list[T]) -> None:
        s = self.stage
        position = s.source.position(records)
        try:
            s.target.begin()
            s.target.write(items, position)
            s.target.commit()
        except BaseException as exc:
            s.target.abort(exc)
            raise
        s.source.committed(position)
        m.BATCHES.labels(s.name).inc()
        m.RECORDS.labels(s.name, m.WRITTEN).inc(len(items))
        if self._letters:
            m.RECORDS.labels(s.name, m.DEAD_LETTERED).inc(self._letters)
            m.ERRORS.labels(s.name, m.SKIPPABLE).inc(self._letters)
        for stats in (self.stats, self._window):
            stats.batches += 1
            stats.records += len(records)
            stats.dead_lettered += self._letters

    def _progress(self) -> None:
        every = self.stage.options.progress_every
        if every <= 0 or time.monotonic() < self._next_progress:
            return
        w = self._window
        if w.batches:
            log.info("%s: %d records in %d batches (%d dead-lettered) in the last %.0fs", self.stage.name,
                     w.records, w.batches, w.dead_lettered, every)
        self._window = StageStats()
        self._next_progress = time.monotonic() + every
