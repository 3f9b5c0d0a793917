"""A stage target that writes to Kafka in transactions, and rides through a lost producer in process.

A :class:`cdx.stage.contract.Target` for every hop that writes Kafka records together with its source
position (capture: table topics + ``<prefix>._capture_positions``; channel upload: the upload topic +
``<prefix>._upload_positions``). The stage says what goes out; this module owns the transaction.

Contract
- ``open()`` creates the :class:`~cdx.kafka.transactions.TransactionalProducer` (``init_transactions``
  fences any older instance with the same ``transactional.id`` and aborts what it left open; a producer
  lost in its ``init_transactions`` counts against the budget and is ``RetriableError``);
  ``begin`` / ``write(items, position)`` / ``commit`` / ``abort`` are one Kafka transaction per batch.
  ``write`` produces every :class:`Outgoing` of every item (an item: what the stage's ``decode`` made of
  one source record), then the records ``position_records(position)`` gives (the position, keyed so
  that a compacted topic keeps the last): both or neither are committed.
- ``transaction(work)`` runs a side transaction of its own with the same error handling. With a
  ``schemas_topic``, ``publisher`` (a transactional :class:`~cdx.codec.SchemaPublisher` on this producer,
  told how each transaction ended) and ``publish(schemas)``: the schemas not in the topic yet go out in a
  side transaction, so that a long data transaction never holds back the schemas topic's last stable
  offset (read_committed readers would not see other producers' schemas until it commits).
- ``items``: what ``write`` got in the open transaction; ``on_commit`` / ``on_abort`` callables run
  after each commit / abort (e.g. metrics and log lines of what was committed).
- **A lost producer** (``ProducerLost``: fenced by a newer epoch of its ``transactional.id``, or failed
  fatally) is never fatal by itself. A broker failover causes it (the transaction coordinator moves and
  bumps the epoch) as much as a second process does. The target marks the producer lost and raises
  ``RetriableError``: the stage loop rolls back, rewinds its source (which must re-read its positions
  from what is committed, read_committed) and retries after its :class:`cdx.stage.backoff.Backoff`.
  ``recover()`` (called by ``begin``, and by the stage before it polls again so that the source re-reads
  after the lost transaction is aborted) then, one log line per attempt:

  1. counts the failure in a :class:`cdx.stage.budget.FailureBudget` (more than 10 within 600 s:
     ``FatalError``, the process exits and its supervisor restarts it);
  2. asks ``still_ours()`` (e.g. :meth:`cdx.kafka.lease.Lease.confirmed`): False means another process
     took the role over (the fence came from it), so the stage stops with ``FatalError`` as before;
     ``RetriableError`` (cannot tell now) is retried later;
  3. replaces the producer by a new instance with the same ``transactional.id``
     (:meth:`~cdx.kafka.transactions.TransactionalProducer.reopen`); a failure is retried later.
- ``abort`` never raises (the stage contract) and always runs the ``on_abort`` callables (also when no
  transaction was open: what a stage held for the batch is dropped); ``close`` is idempotent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from cdx.codec import AvroSchema, SchemaPublisher
from cdx.errors import FatalError, RetriableError
from cdx.kafka.transactions import ProducerLost, TransactionalProducer
from cdx.stage.budget import FailureBudget

P = TypeVar("P")

log = logging.getLogger("cdx.stage")


@dataclass
class Outgoing:
    """Records for one topic, in order: dicts with ``key``, ``value`` and optionally ``headers``."""

    topic: str
    messages: list[dict[str, Any]] = field(default_factory=list)


class KafkaTxnTarget(Generic[P]):
    """See the module docstring. ``config``: producer settings with ``transactional.id``."""

    def __init__(self, name: str, config: Mapping[str, Any], position_records: Callable[[P], Sequence[Outgoing]],
                 *, still_ours: Callable[[], bool] | None = None, budget: FailureBudget | None = None,
                 schemas_topic: str | None = None) -> None:
        self.name, self.config, self.position_records = name, dict(config), position_records
        self.still_ours = still_ours
        self.budget = budget or FailureBudget(name)
        self.producer: TransactionalProducer | None = None
        self.lost: BaseException | None = None
        self.recoveries = 0
        self.items: Sequence[Any] = ()
        self.on_commit: list[Callable[[], None]] = []
        self.on_abort: list[Callable[[], None]] = []
        self.publisher = SchemaPublisher(None, schemas_topic, transactional=True) if schemas_topic else None
        if self.publisher is not None:
            self.on_commit.append(self.publisher.transaction_committed)
            self.on_abort.append(self.publisher.transaction_aborted)

    @property
    def txn(self) -> TransactionalProducer:
        assert self.producer is not None, "open() first"
        return self.producer

    def open(self) -> None:
        if self.producer is None:
            try:
                self.producer = TransactionalProducer(self.config)
            except ProducerLost as exc:  # init_transactions failed fatally (a failover): a new one may not
                self.budget.spend(exc)
                raise RetriableError(f"{self.name}: the new Kafka producer is lost: {exc}") from exc
            if self.publisher is not None:
                self.publisher.producer = self.producer

    def recover(self) -> None:
        """Replace a lost producer (see the module docstring); nothing to do when it is not lost."""
        cause = self.lost
        if cause is None:
            return
        failures = self.budget.spend(cause)
        log.warning("%s: producer lost (%s); recovery attempt %d (%d failures in the last %.0f s): a new producer"
                    " with the same transactional.id, then on from what is committed", self.name, cause,
                    self.recoveries + 1, failures, self.budget.window)
        if self.still_ours is not None and not self.still_ours():
            raise FatalError(f"{self.name}: producer fenced and another process took over the role (it holds the"
                             f" lease); this one stops (cause: {cause})") from cause
        try:
            self.txn.reopen()
        except ProducerLost as exc:
            self.lost = exc
            raise RetriableError(f"{self.name}: the new producer is lost too: {exc}") from exc
        self.lost = None
        self.recoveries += 1
        log.warning("%s: recovered from a lost producer (%d recoveries so far)", self.name, self.recoveries)

    def _lose(self, exc: ProducerLost) -> RetriableError:
        self.lost = exc
        return RetriableError(f"{self.name}: Kafka producer lost ({exc}); recovering in process")

    def begin(self) -> None:
        self.items = ()
        self.recover()
        try:
            self.txn.begin()
        except ProducerLost as exc:
            raise self._lose(exc) from exc

    def write(self, items: Sequence[Iterable[Outgoing]], position: P) -> None:
        self.items = items
        for out in (*(o for item in items for o in item), *self.position_records(position)):
            if out.messages:
                self.txn.produce_many(out.topic, out.messages)

    def commit(self) -> None:
        try:
            self.txn.commit()
        except ProducerLost as exc:
            raise self._lose(exc) from exc
        for hook in self.on_commit:
            hook()

    def abort(self, error: BaseException | None = None) -> None:
        producer = self.producer
        if producer is not None and producer.in_transaction and self.lost is None:
            try:
                producer.abort()
            except ProducerLost as exc:
                self.lost = exc
                log.warning("%s: aborting failed, the producer is lost: %s", self.name, exc)
        if producer is not None:
            producer.in_transaction = False
        for hook in self.on_abort:
            hook()

    def transaction(self, work: Callable[[], object]) -> None:
        """``work`` (which produces through ``txn``) in a transaction of its own; aborted on any error."""
        self.begin()
        try:
            work()
            self.commit()
        except BaseException as exc:
            self.abort(exc)
            raise

    def publish(self, schemas: Sequence[AvroSchema]) -> None:
        """The ``schemas`` not in the schemas topic yet, in a transaction of their own (see the module docstring)."""
        publisher = self.publisher
        assert publisher is not None, "a target with a schemas_topic"
        if {s.fingerprint_hex for s in schemas} - publisher.published:
            self.transaction(lambda: [publisher.publish(s) for s in schemas])

    def close(self) -> None:
        if self.producer is None:
            return
        if self.lost is None:
            self.abort()
        producer, self.producer = self.producer, None
        producer.producer.flush(5)
