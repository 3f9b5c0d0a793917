"""The channel database as a stage target (:class:`cdx.stage.contract.Target` of ``ChannelSink``).

One transaction per batch: rows, offsets and watermarks, dead letters of undecodable records and the
``Applied`` session (``apply.write_batch``). The position is the batch itself (its offsets and
watermarks, dead-lettered records' included: none is applied or dead-lettered again once committed).
Driver errors are typed by the dialect: a refused record ``SkippableError`` (the kernel isolates it),
unreachable or deadlocked ``RetriableError``, the rest fatal. ``refused`` (the stage's ``dead_letter``)
asks ``breaker`` whether the failure is systematic (``SystematicFailure`` stops the channel), else the
record is written alone next, its letter delivered in that transaction (``plan_batch(poison=)``). A
batch refused as a whole records a ``Failed`` session (``isolating the refused record``); one dropped by
a transient failure keeps one in ``failed_batch``, written once the database answers again.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from cdx.cleanup import quietly
from cdx.connectors.sink import metrics
from cdx.connectors.sink.apply import BatchResult, batch_session, write_batch
from cdx.connectors.sink.breaker import FailureBreaker, dry_run
from cdx.connectors.sink.lock import ChannelLock
from cdx.connectors.sink.records import Decoder, Record
from cdx.connectors.sink.resync import Resync, ResyncReport
from cdx.connectors.sink.sessions import FAILED, Session, SessionLog
from cdx.connectors.sink.settings import DeadLetterSink, Totals
from cdx.connectors.sink.spec import SinkSpec
from cdx.connectors.sink.state import SinkState, StateStore
from cdx.connectors.sink.tables import TableManager
from cdx.dialects.base import Dialect, cdx_category
from cdx.errors import CdxError, RetriableError, SkippableError
from cdx.stage.sessions import utcnow

log = logging.getLogger("cdx.sink")


class _Aborted(Exception):
    """Thrown into the open transaction's context manager to roll it back."""


class ChannelTarget:
    """Mixin of ``ChannelSink``, which sets these attributes (``conn`` is opened by the sink)."""

    spec: SinkSpec
    name: str
    dialect: Dialect
    decoder: Decoder
    store: StateStore
    sessions: SessionLog
    tables: TableManager
    lock: ChannelLock
    dead_letters: DeadLetterSink
    kafka_config: dict[str, Any]
    state: SinkState
    totals: Totals
    breaker: FailureBreaker
    last_resync: ResyncReport | None
    conn: Any
    failed_batch: Session | None
    _batch: Sequence[Record]
    _labels: dict[str, str]
    _tx: contextlib.ExitStack[Any] | None = None
    _writing: Sequence[Record] = ()
    _result: BatchResult | None = None
    _poison: str | None = None

    def begin(self) -> None:
        if self.conn is None:
            raise RetriableError(f"channel database of {self.name} is not open")
        tx = contextlib.ExitStack()
        try:
            tx.enter_context(self.dialect.transaction(self.conn))
        except Exception as e:
            raise self._typed(e) from e
        self._tx = tx

    def write(self, items: Sequence[Record], position: Sequence[Record]) -> None:
        """Write the batch ``position``; ``items`` is empty when its one record was refused (``refused``)."""
        self._writing = position
        poison = self._poison if not items else None
        try:
            self._result = write_batch(self.conn, self.dialect, self.store, self.tables, self.spec, list(position),
                                       self._dead_letter, poison=poison, sessions=self.sessions,
                                       guard=self.lock.confirm)
        except CdxError:
            raise
        except Exception as e:
            raise self._typed(e) from e

    def commit(self) -> None:
        tx, self._tx = self._tx, None
        assert tx is not None and self._result is not None
        try:
            tx.close()
        except CdxError:
            raise
        except Exception as e:
            raise self._typed(e) from e
        result, self._result = self._result, None
        if self._poison is None:
            self.breaker.succeeded()
        self._poison = None
        result.state.merge(result.plan.offsets, result.plan.watermarks)
        self._count(result)

    def abort(self, error: BaseException | None = None) -> None:
        tx, self._tx = self._tx, None
        if tx is not None:
            quietly(lambda: tx.__exit__(_Aborted, _Aborted(), None), f"sink {self.name}: rolling back", log)
        self.tables.reset()
        self._result, self._poison = None, None
        if isinstance(error, SkippableError) and self._writing is self._batch:
            self.sessions.record_alone(self.conn, batch_session(
                self.spec, self._batch, None, None, utcnow(), status=FAILED,
                error=f"refused by the database: {error}; isolating the refused record"))

    # ------------------------------------------------------------- the stage's callables
    def refused(self, rec: Record, error: SkippableError) -> None:
        """The stage's ``dead_letter``: ``rec`` alone is refused; its letter goes with its offset."""
        at = next((i for i, r in enumerate(self._batch) if r is rec), len(self._batch))
        self.breaker.refused(error.__cause__ or error, rec, self._batch[at + 1:])
        log.warning("sink %s: dead-lettering a record the database refuses: %s", self.name, error)
        self._poison = error.reason

    def batch_failed(self, records: Sequence[Record], error: Exception) -> None:
        """The stage's ``on_failure``: a dropped batch's ``Failed`` session waits for the database."""
        if isinstance(error, RetriableError):
            self.failed_batch = batch_session(self.spec, records, None, None, utcnow(), status=FAILED,
                                              error=f"batch dropped, retried: {error}")

    # --------------------------------------------------------------------------- helpers
    def _typed(self, e: Exception) -> CdxError:
        return self._category(e)(f"{type(e).__name__}: {e}")

    def _category(self, exc: BaseException) -> type[CdxError]:
        if isinstance(exc, CdxError):
            return cdx_category(exc)
        return self.dialect.classify_error(exc)

    def _dry_run(self, rec: Record) -> BaseException | None:
        return dry_run(self.conn, self.dialect, self.store, self.tables, self.spec, rec)

    def _dead_letter(self, rec: Record, reason: str) -> None:
        self.dead_letters.send(self.spec.owner_id, self.spec.kind, self.spec.topic, rec, reason)

    def _count(self, result: BatchResult) -> None:
        self.state = result.state
        plan, t = result.plan, self.totals
        t.applied += plan.applied
        t.duplicates += plan.duplicates
        t.filtered += plan.filtered
        t.dead_lettered += len(plan.dead)
        t.batches += 1
        metrics.APPLIED.labels(**self._labels).inc(plan.applied)
        metrics.DUPLICATES.labels(**self._labels).inc(plan.duplicates)
        metrics.FILTERED.labels(**self._labels).inc(plan.filtered)
        metrics.DEAD_LETTERED.labels(**self._labels).inc(len(plan.dead))

    def _resync(self, reason: str) -> None:
        assert self.conn is not None
        report = Resync(self.conn, self.dialect, self.spec, self.store, self.tables, self.decoder, self.kafka_config,
                        self._dead_letter, self.sessions, guard=self.lock.confirm).run(reason)
        self.state = report.state
        self.last_resync = report
        self.totals.resyncs += 1
        metrics.RESYNCS.labels(**self._labels).inc()
