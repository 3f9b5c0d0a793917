"""In-process recovery of the transactional router (``cdx.streams.engine``) from a lost producer.

A broker failover can fence the router's producer although no other router runs: the transaction
coordinator of its ``transactional.id`` moves to another broker, and the open transaction is aborted with
a bumped producer epoch (the coordinator timed it out, or completed it while it moved); librdkafka then
reports ``PRODUCER_FENCED`` / ``INVALID_PRODUCER_EPOCH`` or another error it flags fatal, after which the
producer instance must be destroyed (``cdx.kafka.transactions.ProducerLost``). Kafka Streams (EOS v2)
treats such a fence as "task migrated": close the tasks dirty, rejoin the group, re-create the thread's
producer; the rejoin tells whether the tasks really moved. The router does the same with one difference:
its consumer's group membership is intact (the group coordinator fences a member, not the transaction
coordinator), so it keeps it, and with it its partitions, instead of rejoining:

1. drop what the lost transaction held (key-state and progress overlays, the router's batch, schemas it
   published): nothing of it is committed;
2. destroy the producer and create a new one with the same ``transactional.id``; ``init_transactions``
   aborts what the lost one left open and takes a new epoch;
3. re-read the key state and the progress (changelogs, read_committed), seek every assigned partition
   back to the group's committed offset and activate them again (``cdx.streams.activation``): routing
   goes on from exactly what is committed, so read_committed readers see nothing twice and miss nothing.

Attempts are spaced by ``cdx.stage.backoff.Backoff`` (0.5 s doubling to 30 s, reset by the next committed
transaction), one log line each.

**Replaced, not moved**: another live worker with the same instance id (same ``--instance-id``, or the same
host and ``--datadir``) shares the transactional id; recovering would fence it in turn. It is told apart by
the consumer group: with ``--instance-id`` (static membership) its consumer fences ours, a fatal consumer
error; otherwise the group lists another member with our ``client.id``. Either way the worker stops with
exit 1. A twin that has not joined the group yet fences us again and again: more than ``LIMIT`` failures
(fences and failed attempts) within ``WINDOW`` seconds also stop the worker, which a broker failover does
not come near (one or two fences per failed broker).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any, Protocol

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from cdx.errors import FatalError, RetriableError
from cdx.kafka.transactions import producer_lost
from cdx.stage.backoff import Backoff
from cdx.streams.keystate import KeyState
from cdx.streams.progress import Progress
from cdx.streams.router import group_id
from cdx.topology import Topology

log = logging.getLogger("cdx.router")

LIMIT = 10
WINDOW = 600.0


class RecoverableEngine(Protocol):
    """What ``Recovery`` uses of the transactional engine (``cdx.streams.engine.Engine``), so this module
    imports nothing of it (no import circle)."""

    topology: Topology

    @property
    def config(self) -> dict[str, Any]: ...

    @property
    def consumer(self) -> Consumer: ...

    @property
    def keys(self) -> KeyState: ...

    @property
    def progress(self) -> Progress: ...

    @property
    def assigned(self) -> set[tuple[str, int]]: ...

    @property
    def active(self) -> set[tuple[str, int]]: ...

    @property
    def processed(self) -> dict[tuple[str, int], int]: ...

    @property
    def client_id(self) -> str: ...

    @property
    def instance_id(self) -> str: ...

    def drop_lost_transaction(self) -> None:
        """Forget what the lost transaction held (its state changes, its pending schemas)."""

    def replace_producer(self) -> None:
        """A new producer with the same transactional id (``init_transactions`` aborts the lost one's)."""


class Recovery:
    """Recovers an ``Engine`` from a lost producer (see the module docstring); ``recover`` raises
    ``FatalError`` when the worker was replaced or recovered too often."""

    def __init__(self, engine: RecoverableEngine, stop: threading.Event, *, limit: int = LIMIT,
                 window: float = WINDOW) -> None:
        self.e = engine
        self.stop = stop
        self.limit, self.window = limit, window
        self.failures: deque[float] = deque()
        self.backoff = Backoff(initial=0.5, maximum=30.0)
        self.recoveries = 0

    def _failed(self, cause: BaseException) -> None:
        now = time.monotonic()
        self.failures.append(now)
        while self.failures and self.failures[0] < now - self.window:
            self.failures.popleft()
        if len(self.failures) > self.limit:
            raise FatalError(f"router: {len(self.failures)} producer failures within {self.window:.0f} s,"
                             f" the last: {cause}; stopping (another worker with the same instance id?)") from cause

    def recover(self, cause: BaseException) -> None:
        """Replace the lost producer and go on from what is committed; returns when done or stopping."""
        e = self.e
        self._failed(cause)
        self._check_not_replaced(cause)
        self._drop_transaction()
        while not self.stop.is_set():
            log.warning("router: producer lost (%s); recovery attempt %d in %.1fs (%d failures in the last"
                        " %.0f s): new producer, state re-read, committed offsets", cause, self.backoff.attempts + 1,
                        self.backoff.peek(), len(self.failures), self.window)
            if self.backoff.wait(self.stop):
                return
            try:
                self._replace_producer()
                self._from_committed()
            except (KafkaException, RetriableError) as exc:
                if producer_lost(exc):
                    self._check_not_replaced(exc)
                self._failed(exc)
                cause = exc
                continue
            self.recoveries += 1
            log.warning("router: recovered from a lost producer (%d recoveries so far); routing from the committed"
                        " offsets of %d partitions", self.recoveries, len(e.assigned))
            return

    def _drop_transaction(self) -> None:
        self.e.drop_lost_transaction()

    def _replace_producer(self) -> None:
        self.e.replace_producer()

    def _from_committed(self) -> None:
        e = self.e
        e.keys.restore()
        e.progress.sync()
        tps = [TopicPartition(t, p) for t, p in sorted(e.assigned)]
        for tp in e.consumer.committed(tps, timeout=30) if tps else []:
            if tp.error is not None:
                raise RetriableError(f"committed offset of {tp.topic}[{tp.partition}]: {tp.error}")
            e.consumer.seek(TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_BEGINNING))
        e.processed.clear()
        e.active.clear()  # activated again before their next record: backfills resume from the progress

    def _check_not_replaced(self, cause: BaseException) -> None:
        """Raise ``FatalError`` when another live member of the group has our ``client.id``."""
        e = self.e
        group = group_id(e.topology)
        try:
            admin = AdminClient(e.config)  # referenced until the result: a collected client never completes it
            desc = admin.describe_consumer_groups([group], request_timeout=15)[group].result(20)
        except (KafkaException, TimeoutError) as exc:  # advisory: the failure limit still applies
            log.warning("router: cannot describe the group %s to check for a twin worker (%s)", group, exc)
            return
        me, client = e.consumer.memberid(), e.client_id
        twins = [m for m in desc.members or () if m.client_id == client and m.member_id != me]
        if twins:
            raise FatalError(f"router: replaced: another worker with instance id {e.instance_id} is in the group"
                             f" {group} ({twins[0].host}); this one stops (cause: {cause})") from cause
