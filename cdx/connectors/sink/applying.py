"""The part of ``ChannelSink`` that applies batches: one transaction per batch with rows, offsets and
watermarks (``commit_batch``), poison-record isolation, totals and metrics, resyncs.

Contract (see ``runner`` for the whole sink)
- A batch commits rows + offsets + watermarks + its ``Applied`` session in one transaction; a record
  the database refuses (``SkippableError``) is isolated by halving the batch down to that record, which
  is dead-lettered with its offset committed, unless ``breaker`` finds the failure systematic (then
  the channel stops).
- A transient failure (``RetriableError``) propagates with the batch uncommitted; ``_failed_batch``
  holds its ``Failed`` session, written once the database answers again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import Message

from cdx.connectors.sink import metrics
from cdx.connectors.sink.apply import BatchResult, batch_session, commit_batch
from cdx.connectors.sink.breaker import FailureBreaker, dry_run
from cdx.connectors.sink.gating import GatedSink
from cdx.connectors.sink.lock import ChannelLock
from cdx.connectors.sink.records import Decoder, Record, decode_message
from cdx.connectors.sink.resync import Resync, ResyncReport
from cdx.connectors.sink.sessions import FAILED, Session, SessionLog, utcnow
from cdx.connectors.sink.settings import DeadLetterSink, SinkSettings, Totals
from cdx.connectors.sink.state import SinkState, StateStore
from cdx.connectors.sink.tables import TableManager
from cdx.dialects.base import Dialect, cdx_category
from cdx.errors import CdxError, FatalError, RetriableError, SkippableError

log = logging.getLogger("cdx.sink")


class ApplyingSink(GatedSink):
    """Mixin of ``ChannelSink``, which sets these attributes."""

    settings: SinkSettings
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
    _failed_batch: Session | None
    _batch: list[Record]
    _labels: dict[str, str]
    ends_seen: Callable[[], Mapping[int, int]]

    def _take_batch(self) -> list[Message | Record]:
        """The next batch from the inbox, up to ``batch_size``. With ``decode_ahead`` only a full one, or what is
        left once the feed has read up to the topic's end offsets (taken at once, batches would shrink to what
        the feed decoded meanwhile: many small transactions); meanwhile the worker naps (5 ms) and returns []."""
        with self._mu:
            n = min(self.settings.batch_size, len(self._inbox))
            if not self.settings.decode_ahead or n == self.settings.batch_size \
                    or all(self._next.get(p, 0) >= end for p, end in self.ends_seen().items()):
                return [self._inbox.popleft() for _ in range(n)]
        time.sleep(0.005)
        return []

    def _handle(self, msgs: list[Message | Record]) -> None:
        """Apply one batch of consumed messages (or records decoded ahead); ``RetriableError`` leaves it
        uncommitted."""
        started = utcnow()
        records: list[Record] = []
        try:
            records = self._cut([m if isinstance(m, Record) else decode_message(self.decoder, m) for m in msgs])
            if records:
                self._apply_isolating(records)
        except Exception as e:
            if self._category(e) is not RetriableError:
                raise
            seen = records or [m if isinstance(m, Record) else Record(m.partition() or 0, m.offset() or 0, None, None)
                               for m in msgs]
            self._failed_batch = batch_session(self.spec, seen, None, None, started, status=FAILED,
                                               error=f"batch dropped, retried: {e}")
            raise e if isinstance(e, RetriableError) else RetriableError(f"{type(e).__name__}: {e}") from e

    def _category(self, exc: BaseException) -> type[CdxError]:
        if isinstance(exc, CdxError):
            return cdx_category(exc)
        return self.dialect.classify_error(exc)

    def _apply_isolating(self, records: list[Record], top: bool = True) -> None:
        """Commit ``records``; on a record-level error, halve until the poison record is alone."""
        started = utcnow()
        if top:
            self._batch = records
        error = self._try_commit(records)
        if error is None:
            return
        if top:
            self.sessions.record_alone(self.conn, batch_session(
                self.spec, records, None, None, started, status=FAILED,
                error=f"refused by the database: {type(error).__name__}: {error}; isolating the refused record"))
        if sum(r.change is not None for r in records) > 1:
            mid = len(records) // 2
            self._apply_isolating(records[:mid], False)
            self._apply_isolating(records[mid:], False)
            return
        reason = f"{type(error).__name__}: {error}"
        at = next((i for i, r in enumerate(self._batch) if r is records[0]), len(self._batch))
        self.breaker.refused(error, records[0], self._batch[at + 1:])
        log.warning("sink %s: dead-lettering a record the database refuses: %s", self.name, reason)
        again = self._try_commit(records, poison=reason)
        if again is not None:
            raise FatalError(f"sink {self.name}: cannot commit past a refused record: {again}") from again

    def _try_commit(self, records: list[Record], poison: str | None = None) -> Exception | None:
        """Commit; return a record-level (skippable) error, raise the others as Retriable/FatalError."""
        try:
            self._commit(records, poison)
            if poison is None:
                self.breaker.succeeded()
            return None
        except Exception as e:
            category = self._category(e)
            if category is SkippableError:
                return e
            if isinstance(e, CdxError):
                raise
            raise category(f"{type(e).__name__}: {e}") from e

    def _dry_run(self, rec: Record) -> BaseException | None:
        return dry_run(self.conn, self.dialect, self.store, self.tables, self.spec, rec)

    def _dead_letter(self, rec: Record, reason: str) -> None:
        self.dead_letters.send(self.spec.owner_id, self.spec.kind, self.spec.topic, rec, reason)

    def _commit(self, records: list[Record], poison: str | None = None) -> BatchResult:
        if self.conn is None:
            raise RetriableError(f"channel database of {self.name} is not open")
        result = commit_batch(self.conn, self.dialect, self.store, self.tables, self.spec, records,
                              self._dead_letter, poison=poison, sessions=self.sessions, guard=self.lock.confirm)
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
        metrics.BATCHES.labels(**self._labels).inc()
        return result

    def _resync(self, reason: str) -> None:
        assert self.conn is not None
        report = Resync(self.conn, self.dialect, self.spec, self.store, self.tables, self.decoder, self.kafka_config,
                        self._dead_letter, self.sessions, guard=self.lock.confirm).run(reason)
        self.state = report.state
        self.last_resync = report
        self.totals.resyncs += 1
        metrics.RESYNCS.labels(**self._labels).inc()
