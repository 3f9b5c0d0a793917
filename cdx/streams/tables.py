"""The transactional router's source (a :class:`cdx.stage.contract.Source`): the per-table topics.

Consumer group ``<prefix>-router`` (read_committed, auto-commit off); a position is the next offset by
(topic, partition), which the target (``cdx.streams.engine.Engine``) sends to its Kafka transaction.
Partitions assigned since the last batch are **activated** (``cdx.streams.activation``) before any of
their records is handed on; records of a partition revoked while the batch was fetched are dropped (its
new owner routes them). Rebalance callbacks run inside ``poll``, where no transaction is open. ``rewind``
seeks each partition of the batch polled since the last commit back to its first record.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition

from cdx.errors import FatalError, RetriableError
from cdx.kafka.batches import next_batch
from cdx.streams.engine_state import TP, EngineState

log = logging.getLogger("cdx.router")
Offsets = dict[TP, int]


@contextmanager
def retriable(what: str) -> Iterator[None]:
    """A ``KafkaException`` of a call outside the transaction (consumer, admin, reads) as ``RetriableError``."""
    try:
        yield
    except KafkaException as exc:
        raise RetriableError(f"router: {what}: {exc}") from exc


class Cadence:
    """How many records the next transaction takes: what is there (``next_batch`` hands on a single change at
    once when idle), at most ``batch_size``, and no more than routing fits in ``max_seconds`` at the recent
    cost per record, so a transaction stays short (its records become visible to read_committed readers at
    its commit) even on a loaded machine; under backlog batches stay large enough to amortise the commit."""

    def __init__(self, batch_size: int, max_seconds: float = 0.25, floor: int = 500) -> None:
        self.batch_size, self.max_seconds, self.floor = batch_size, max_seconds, min(floor, batch_size)
        self.per_record = 0.0

    def observe(self, records: int, seconds: float) -> None:
        if records >= 50:
            cost = seconds / records
            self.per_record = cost if self.per_record == 0.0 else 0.8 * self.per_record + 0.2 * cost

    def limit(self) -> int:
        if self.per_record <= 0.0:
            return self.batch_size
        return max(self.floor, min(self.batch_size, int(self.max_seconds / self.per_record)))


class TableTopics:
    """The source (module docstring). ``activate`` activates partitions; ``stop`` set: ``poll`` hands on nothing."""

    def __init__(self, e: EngineState, cadence: Cadence, activate: Callable[[list[TP]], None],
                 stop: threading.Event) -> None:
        self.e, self.cadence, self.activate, self.stop = e, cadence, activate, stop
        self._polled: list[Message] = []
        """The last poll's records until they are committed (``rewind`` seeks back to the first of each partition)."""
        self._batch: Sequence[Message] = ()
        self._ends: Offsets = {}

    def open(self) -> None:
        self.e.consumer.subscribe(self.e.plan.source_topics, on_assign=self._on_assign,
                                  on_revoke=self._on_revoke, on_lost=self._on_revoke)

    def poll(self, max_records: int, max_wait: float) -> Sequence[Message]:
        e = self.e
        if self.stop.is_set():  # e.g. a restart asked for between batches: nothing more with this topology
            return ()
        with retriable("consume"):
            msgs = next_batch(e.consumer, min(max_records, self.cadence.limit()), max_wait)
            self._polled = msgs
            if e.assigned - e.active:
                self.activate(sorted(e.assigned - e.active))
        self._batch, self._ends = self._checked(msgs)
        return self._batch

    def _checked(self, msgs: list[Message]) -> tuple[Sequence[Message], Offsets]:
        """The records of active partitions and the offsets after them; consumer errors raised typed."""
        ends: Offsets = {}
        active, dropped = self.e.active, False
        for m in msgs:
            err = m.error()
            if err is not None:
                if err.fatal():  # e.g. FENCED_INSTANCE_ID: a worker with our --instance-id replaced us
                    raise FatalError(f"router: the consumer failed fatally (replaced?): {err.str()}")
                if err.code() != KafkaError._PARTITION_EOF:
                    raise RetriableError(f"consume failed: {err.str()}")
                dropped = True
                continue
            tp = (m.topic() or "", m.partition() or 0)
            if tp in active:
                ends[tp] = (m.offset() or 0) + 1
            else:
                dropped = True  # revoked while this batch was fetched: its new owner routes it
        if dropped:
            msgs = [m for m in msgs if m.error() is None and (m.topic() or "", m.partition() or 0) in active]
        return msgs, ends

    def position(self, records: Sequence[Message]) -> Offsets:
        if records is self._batch:
            return self._ends
        return {(m.topic() or "", m.partition() or 0): (m.offset() or 0) + 1 for m in records}

    def committed(self, position: Offsets) -> None:
        self.e.processed.update(position)
        self._polled = []

    def rewind(self) -> None:
        first: Offsets = {}
        for m in self._polled:
            if m.error() is None:
                first.setdefault((m.topic() or "", m.partition() or 0), m.offset() or 0)
        self._polled = []
        for (t, p), off in first.items():
            if (t, p) in self.e.assigned:
                try:
                    self.e.consumer.seek(TopicPartition(t, p, off))
                except KafkaException as exc:
                    log.warning("router: cannot seek %s[%d] back to %d (%s); re-activating it", t, p, off, exc)
                    self.e.active.discard((t, p))

    def close(self) -> None:
        try:
            self.e.consumer.close()
        except (KafkaException, RuntimeError) as exc:
            log.warning("router: consumer close: %s", exc)

    def _on_assign(self, _consumer: object, partitions: list[TopicPartition]) -> None:
        self.e.assigned.update((tp.topic, tp.partition) for tp in partitions)
        log.info("router: assigned %d partitions (%d in all)", len(partitions), len(self.e.assigned))

    def _on_revoke(self, _consumer: object, partitions: list[TopicPartition]) -> None:
        e = self.e
        if e.txn.open:  # never expected: the rebalance callbacks run in poll, between transactions
            try:
                e.txn.abort()
            except RetriableError as exc:
                log.warning("router: %s", exc)
        gone = {(tp.topic, tp.partition) for tp in partitions}
        e.assigned.difference_update(gone)
        e.active.difference_update(gone)
        for tp in gone:
            e.processed.pop(tp, None)
