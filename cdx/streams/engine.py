"""The transactional router (``cdx route``, the default engine): consume -> route -> produce, exactly once.

One loop on confluent-kafka, no asyncio, no per-record callbacks:

1. ``consume`` a batch (read_committed, auto-commit off) from the per-table topics of the group
   ``<prefix>-router``; partitions assigned since the last batch are **activated** first
   (``cdx.streams.activation``: key state and progress re-read, lagging groups backfilled);
2. begin a Kafka transaction; route every record (``cdx.streams.batch.RecordRouter``): routed records,
   tombstones, dead letters, key-state and progress changelog records and new writer schemas
   are all produced into it;
3. ``send_offsets_to_transaction(next offsets, consumer.consumer_group_metadata())`` and commit.

A crash at any moment leaves either the whole batch (outputs, state, offsets) or none of it to
read_committed readers. The transactional id is ``<prefix>-router-<instance id>``: a restarted
worker with the same id aborts its predecessor's open transaction at once (``init_transactions``);
a worker the group has moved on from is fenced by its stale group generation (KIP-447,
``send_offsets_to_transaction`` with the group metadata). Abortable errors (a failed delivery,
a rebalance during the transaction) abort and seek the batch's partitions back to where it began;
the next batch routes them again. A lost producer (fenced, or failed fatally: a broker failover can do
that, the transaction coordinator moves and bumps the epoch) is replaced in process and routing goes on
from the committed offsets (``cdx.streams.recovery``); the worker stops with exit 1 only when another
live worker took over its instance id, or after repeated failures. Rebalance
callbacks run inside ``consume``, where no transaction is open, so a revoked partition has
nothing in flight.
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from cdx.codec import SchemaPublisher, SchemaStore, make_codec
from cdx.errors import FatalError, RetriableError
from cdx.kafka.batches import next_batch
from cdx.kafka.config import client_config, consumer_config, producer_config, size_limited
from cdx.kafka.transactions import ProducerLost, producer_lost
from cdx.stage.backoff import Backoff
from cdx.streams import metrics
from cdx.streams.activation import Activator, ensure_engine_topics
from cdx.streams.batch import RecordRouter
from cdx.streams.keystate import KeyState, keys_topic, open_store
from cdx.streams.progress import Progress, encode_key, progress_topic
from cdx.streams.recovery import Recovery
from cdx.streams.router import group_id, registry_config
from cdx.streams.routing import RoutingPlan
from cdx.topics import dlq_topic, schemas_topic
from cdx.topology import Topology
from cdx.topology.live import LiveTopology

log = logging.getLogger("cdx.router")

TP = tuple[str, int]
TRANSACTION_TIMEOUT_MS = 60_000


def default_instance_id(datadir: Path | None) -> str:
    """The worker's id when none is given: stable for a host and data directory (random without one), so a
    worker restarted with the same ``--datadir`` fences its killed predecessor at once (``init_transactions``
    aborts the open transaction) instead of holding read_committed readers until the transaction times out."""
    if datadir is None:
        return f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
    digest = hashlib.sha256(str(Path(datadir).resolve()).encode()).hexdigest()[:8]
    return f"{socket.gethostname()}-{digest}"


def transactional_id(topology: Topology, instance_id: str) -> str:
    return f"{group_id(topology)}-{instance_id}"


class Transaction:
    """One producer transaction at a time; errors typed as fatal (raise) or abortable (``Abort``)."""

    class Abort(Exception):
        """The open transaction was aborted; the caller rewinds and tries again."""

    def __init__(self, producer: Producer, publisher: SchemaPublisher, on_end: list[Callable[[bool], None]]) -> None:
        self.producer = producer
        self.publisher = publisher
        self.on_end = on_end
        self.open = False

    def begin(self) -> None:
        self.producer.begin_transaction()
        self.open = True

    def commit(self, offsets: list[TopicPartition] | None, consumer: Consumer) -> None:
        """Send ``offsets`` with the consumer's group metadata (KIP-447: a stale member is fenced), then commit."""
        try:
            if offsets:
                self.producer.send_offsets_to_transaction(offsets, consumer.consumer_group_metadata(), 60)
            self._commit()
        except KafkaException as exc:
            self.abort(exc)
        self.open = False
        self.publisher.transaction_committed()
        for hook in self.on_end:
            hook(True)

    def _commit(self) -> None:
        for _attempt in range(10):
            try:
                self.producer.commit_transaction(60)
                return
            except KafkaException as exc:
                err: KafkaError = exc.args[0]
                if not err.retriable() or err.txn_requires_abort():
                    raise
        self.producer.commit_transaction(60)

    def _abort(self) -> None:
        """Drop what is still queued, serve the failed deliveries' reports, then abort (retried)."""
        self.producer.purge(in_queue=True, in_flight=False, blocking=False)
        for attempt in range(5):
            deadline = time.monotonic() + 5
            while len(self.producer) and time.monotonic() < deadline:
                self.producer.poll(0.1)
            try:
                self.producer.abort_transaction(30)
                return
            except KafkaException as exc:
                e: KafkaError = exc.args[0]
                if e.fatal() or attempt == 4:  # a new producer instance aborts it (init_transactions)
                    raise ProducerLost(f"router transaction could not be aborted: {e.str()}") from exc
                log.warning("router: abort not done yet (%s); retrying", e.str())

    def abort(self, cause: BaseException | None = None) -> None:
        """Abort (raising ``FatalError`` when the producer cannot go on), then raise ``Abort``."""
        if cause is not None and producer_lost(cause):
            if isinstance(cause, ProducerLost):
                raise cause
            raise ProducerLost(f"router transaction fenced or failed fatally: {cause.args[0].str()}") from cause
        if self.open:
            self._abort()
        self.open = False
        self.publisher.transaction_aborted()
        for hook in self.on_end:
            hook(False)
        if isinstance(cause, FatalError | KeyboardInterrupt | SystemExit):
            raise cause
        raise Transaction.Abort(str(cause)) from cause


def _retrying(fn: Callable[[], Any], attempts: int = 10) -> Any:
    """``fn()``, retried while it raises ``RetriableError`` (e.g. a dead worker's transaction still open)."""
    for attempt in range(attempts):
        try:
            return fn()
        except RetriableError as exc:
            if attempt == attempts - 1:
                raise
            log.warning("router: %s; retrying", exc)
            time.sleep(2.0)


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


class Engine:
    """A transactional router worker; ``run()`` blocks until stopped. See the module docstring."""

    def __init__(self, topology: Topology, *, path: Path | None = None, datadir: Path | None = None,
                 instance_id: str | None = None, session_timeout: float = 10.0, reload_interval: float = 1.0,
                 key_store: str = "memory", batch_size: int = 5000, live: LiveTopology | None = None) -> None:
        k = topology.kafka
        self.topology = topology
        self.path = path
        self.live = live
        """Where new topology revisions come from (``cdx.topology.live``); None: never reloads."""
        self.plan = RoutingPlan(topology)
        self.config = client_config(k.bootstrap_servers, k.security)
        self.batch_size = batch_size
        self.cadence = Cadence(batch_size)
        self.reload_interval = reload_interval
        ensure_engine_topics(topology, self.plan)
        self.instance_id = instance_id or default_instance_id(datadir)
        if live is not None:
            live.set_instances([self.instance_id])
        self.producer = self.open_producer()
        self.store = SchemaStore(k.bootstrap_servers, schemas_topic(k.topic_prefix), consumer_config=self.config)
        publisher = SchemaPublisher(self.producer, schemas_topic(k.topic_prefix), transactional=True)
        codec = make_codec(registry_config(topology), store=self.store, publisher=publisher)
        self.keys = KeyState(self.config, keys_topic(k.topic_prefix), open_store(key_store, datadir))
        self.progress = Progress(self.config, progress_topic(k.topic_prefix))
        restored = _retrying(self.keys.restore)
        _retrying(self.progress.sync)
        log.info("router: transactional engine %s; key state restored (%d changelog records, %d keys)",
                 self.instance_id, restored, len(self.keys.store))
        self.router = RecordRouter(self.plan, codec, self.keys, self.producer, dlq_topic(k.topic_prefix))
        self.txn = Transaction(self.producer, publisher, [self._ended])
        self.stop_event = threading.Event()
        self.recovery = Recovery(self, self.stop_event)
        self.client_id = f"cdx-router-{self.instance_id}"
        extra: dict[str, Any] = {"session.timeout.ms": int(session_timeout * 1000),
                                 "heartbeat.interval.ms": int(min(3.0, session_timeout / 3) * 1000),
                                 "max.poll.interval.ms": 600_000, "enable.partition.eof": False,
                                 "client.id": self.client_id}
        if instance_id:
            extra["group.instance.id"] = instance_id
        self.consumer = Consumer(consumer_config(self.config, group_id(topology), **extra))
        self.activator = Activator(self)
        self.assigned: set[TP] = set()
        self.active: set[TP] = set()
        self.processed: dict[TP, int] = {}
        self.stopping = False
        self.reload_requested = False
        self.restart: str | None = None

    def drop_lost_transaction(self) -> None:
        """After a lost producer: forget what its transaction held."""  # see cdx.streams.recovery
        self.txn.open = False
        self.txn.publisher.transaction_aborted()
        for hook in self.txn.on_end:
            hook(False)

    def replace_producer(self) -> None:
        """After a lost producer: a new one, same transactional id (``init_transactions`` aborts its leftovers)."""
        self.producer.purge(in_queue=True, in_flight=True, blocking=False)
        producer = self.open_producer()
        self.producer = self.txn.producer = self.txn.publisher.producer = self.router.producer = producer
        self.activator._legacy = None  # the faust-upgrade reader held the lost producer: built again if needed

    def open_producer(self) -> Producer:
        """A new transactional producer (``init_transactions`` done: any open transaction of the id aborted)."""
        k = self.topology.kafka
        producer = Producer(size_limited(producer_config(
            self.config, transactional_id=transactional_id(self.topology, self.instance_id),
            transaction_timeout_ms=TRANSACTION_TIMEOUT_MS, queue_buffering_max_messages=500_000,
            **{"delivery.report.only.error": True}), k.max_message_bytes))
        producer.init_transactions(60)
        return producer

    # ------------------------------------------------------------------ rebalance callbacks
    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.assigned |= {(tp.topic, tp.partition) for tp in partitions}
        log.info("router: assigned %d partitions (%d in all)", len(partitions), len(self.assigned))

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self.txn.open:  # never expected: consume runs between transactions
            try:
                self.txn.abort()
            except Transaction.Abort:
                pass
        gone = {(tp.topic, tp.partition) for tp in partitions}
        self.assigned -= gone
        self.active -= gone
        for tp in gone:
            self.processed.pop(tp, None)

    def _ended(self, committed: bool) -> None:
        if committed:
            self.recovery.backoff.reset()
            self.keys.commit()
            self.progress.commit()
        else:
            self.keys.abort()
            self.progress.abort()
            self.router.reset()

    # ------------------------------------------------------------------ the loop
    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGHUP, self._hup)
        self.consumer.subscribe(self.plan.source_topics, on_assign=self._on_assign, on_revoke=self._on_revoke,
                                on_lost=self._on_revoke)
        code = 0
        try:
            self._loop()
        except FatalError as exc:
            log.critical("router: stopping: %s", exc)
            code = 1
        finally:
            self.close()
        if self.restart and code == 0:
            import sys

            os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])
        return code

    def _loop(self) -> None:
        next_check = 0.0
        backoff = Backoff(initial=0.5, maximum=10.0)
        while not self.stopping and self.restart is None:
            msgs: list[Message] = []
            try:
                if self.reload_requested or time.monotonic() >= next_check:
                    next_check = time.monotonic() + self.reload_interval
                    self.activator.maybe_reload()
                    if self.restart is not None:
                        return
                msgs = next_batch(self.consumer, self.cadence.limit(), 0.2)
                if self.assigned - self.active:
                    self.activator.activate(sorted(self.assigned - self.active))
                if msgs:
                    self._process(msgs)
                backoff.reset()
            except (Transaction.Abort, RetriableError, KafkaException, ProducerLost) as exc:
                if producer_lost(exc):
                    self.recovery.recover(exc)  # FatalError: replaced, or too many failures
                    continue
                self._rewind(msgs)
                log.warning("router: batch aborted (%s); retrying in %.1fs", exc, backoff.peek())
                backoff.wait(self.stop_event)

    def _process(self, msgs: list[Message]) -> None:
        ends: dict[TP, int] = {}
        started = time.monotonic()
        self.txn.begin()
        route, active = self.router.route, self.active
        try:
            for m in msgs:
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        continue
                    if err.fatal():  # e.g. FENCED_INSTANCE_ID: a worker with our --instance-id replaced us
                        raise FatalError(f"router: the consumer failed fatally (replaced?): {err.str()}")
                    raise RetriableError(f"consume failed: {err.str()}")
                tp = (m.topic() or "", m.partition() or 0)
                if tp not in active:
                    continue  # revoked while this batch was fetched: its new owner routes it
                route(m)
                ends[tp] = (m.offset() or 0) + 1
            self.write_progress(ends)
        except BaseException as exc:
            self.txn.abort(exc)
        routed = time.monotonic()
        self.txn.commit([TopicPartition(t, p, o) for (t, p), o in ends.items()], self.consumer)
        self.cadence.observe(len(msgs), routed - started)
        log.debug("router: committed a batch of %d records, %d routed: %s", len(msgs), self.router.sent, ends)
        self.processed.update(ends)
        metrics.RECORDS_IN.inc(len(msgs))

    def write_progress(self, ends: dict[TP, int], groups: dict[TP, list[str]] | None = None) -> None:
        """Progress records for ``ends`` (every group of the topic, or ``groups[tp]``) into the transaction."""
        for (topic, p), end in ends.items():
            for g in (groups or {}).get((topic, p), self.plan.groups_of(topic)):
                k = (g, topic, p)
                if self.progress.set(k, end):
                    self.router.produce(self.progress.topic, encode_key(k), self.progress.encoded(k), None)

    def _rewind(self, msgs: list[Message]) -> None:
        """Seek each partition of an aborted batch back to its first record."""
        first: dict[TP, int] = {}
        for m in msgs:
            if m.error() is None:
                first.setdefault((m.topic() or "", m.partition() or 0), m.offset() or 0)
        for (t, p), off in first.items():
            if (t, p) in self.assigned:
                try:
                    self.consumer.seek(TopicPartition(t, p, off))
                except KafkaException as exc:
                    log.warning("router: cannot seek %s[%d] back to %d (%s); re-activating it", t, p, off, exc)
                    self.active.discard((t, p))

    def _stop(self, _signum: int, _frame: Any) -> None:
        self.stopping = True
        self.stop_event.set()

    def _hup(self, _signum: int, _frame: Any) -> None:
        self.reload_requested = True

    def close(self) -> None:
        try:
            self.consumer.close()
        except (KafkaException, RuntimeError) as exc:
            log.warning("router: consumer close: %s", exc)
        self.producer.flush(30)
        self.store.close()
        if self.live is not None:
            self.live.close()
