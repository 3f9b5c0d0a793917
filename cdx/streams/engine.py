"""The transactional router (``cdx route``, the default engine): consume -> route -> produce, exactly once.

A stage on the kernel (:mod:`cdx.stage`): :func:`cdx.stage.loop.run_stage` owns the loop (batching,
back-off, error taxonomy, SIGTERM, ``cdx_stage_*`` metrics). The source is ``cdx.streams.tables`` (the
table topics; positions are offsets); the target is the ``Engine``: one Kafka transaction per batch
holding the routed records, key-state and progress changelog records, dead letters and new writer
schemas (``cdx.streams.batch``), and the offsets (``send_offsets_to_transaction`` with the consumer's
group metadata). The router's own parts are hooks: partitions are **activated** before routing
(``cdx.streams.activation``: key state and progress re-read, lagging groups backfilled, changed shapes
re-routed), topology revisions are taken between batches, and a lost producer is replaced before the
next batch (``cdx.streams.recovery``).

A crash at any moment leaves either the whole batch (outputs, state, offsets) or none of it to
read_committed readers. The transactional id is ``<prefix>-router-<instance id>``: a restarted
worker with the same id aborts its predecessor's open transaction at once (``init_transactions``);
a worker the group has moved on from is fenced by its stale group generation (KIP-447). Abortable
errors (a failed delivery, a rebalance during the transaction) abort, seek the batch's partitions back
and retry after the loop's back-off. A lost producer (fenced, or failed fatally: a broker failover can
do that) is replaced in process and routing goes on from the committed offsets; the worker stops with
exit 1 only when another live worker took over its instance id, or after repeated failures.
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from cdx.codec import SchemaPublisher, SchemaStore, make_codec
from cdx.errors import FatalError, RetriableError, SkippableError
from cdx.kafka.config import client_config, consumer_config, producer_config, size_limited
from cdx.kafka.transactions import ProducerLost, commit_retried, producer_lost
from cdx.stage.contract import Stage, StageOptions
from cdx.stage.loop import run_stage
from cdx.streams import metrics
from cdx.streams.activation import Activator, ensure_engine_topics
from cdx.streams.batch import RecordRouter
from cdx.streams.engine_state import TP
from cdx.streams.keystate import KeyState, open_store
from cdx.streams.progress import Progress, encode_key
from cdx.streams.recovery import Recovery
from cdx.streams.router import group_id
from cdx.streams.routing import RoutingPlan
from cdx.streams.tables import Cadence, Offsets, TableTopics, retriable
from cdx.topics import dlq_topic, schemas_topic
from cdx.topics import router_keys_topic as keys_topic
from cdx.topics import router_progress_topic as progress_topic
from cdx.topology import Topology
from cdx.topology.live import LiveTopology

__all__ = ["Cadence", "Engine", "Transaction", "default_instance_id", "transactional_id"]

log = logging.getLogger("cdx.router")

TRANSACTION_TIMEOUT_MS = 60_000
OFFSETS_TIMEOUT_S = 15.0
ABORT_TIMEOUT_S = 10.0
ABORT_ATTEMPTS = 3
"""A transaction coordinator that moved (broker failover) answers neither ``send_offsets_to_transaction``
nor ``abort_transaction`` until the new one has loaded; waiting 60 s + 5 x 30 s for it made the router's
pause after a broker kill ~100 s in the cluster test. Shorter calls give up sooner: the batch is aborted
and retried, and an abort that still does not complete hands over to the in-process recovery (a new
producer's ``init_transactions`` aborts what is left open); the broker also aborts a transaction older
than ``TRANSACTION_TIMEOUT_MS``."""


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
    """One producer transaction at a time. Every failure comes out typed: ``Abort`` (aborted: rewind and
    retry), ``Lost`` (the producer is lost; ``lost`` holds why, ``cdx.streams.recovery`` replaces it before
    the next batch), or the ``FatalError`` that caused it. Either way what the transaction held is dropped."""

    class Abort(RetriableError):
        """The open transaction was aborted; the caller rewinds and tries again."""

    class Lost(RetriableError):
        """The producer is lost (fenced, or failed fatally); ``Transaction.lost`` holds the cause."""

    def __init__(self, producer: Producer, publisher: SchemaPublisher, on_end: list[Callable[[bool], None]]) -> None:
        self.producer = producer
        self.publisher = publisher
        self.on_end = on_end
        self.open = False
        self.lost: BaseException | None = None

    def begin(self) -> None:
        try:
            self.producer.begin_transaction()
        except KafkaException as exc:
            self.abort(exc)
        self.open = True

    def commit(self, offsets: list[TopicPartition] | None, consumer: Consumer) -> None:
        """Send ``offsets`` with the consumer's group metadata (KIP-447: a stale member is fenced), then commit."""
        try:
            if offsets:
                self.producer.send_offsets_to_transaction(offsets, consumer.consumer_group_metadata(),
                                                          OFFSETS_TIMEOUT_S)
            commit_retried(self.producer, 60)
        except KafkaException as exc:
            self.abort(exc)
        self._end(True)

    @contextmanager
    def run(self, offsets: list[TopicPartition] | None, consumer: Consumer) -> Iterator[None]:
        """``with txn.run(offsets, consumer):`` begin; the block; commit (``abort`` on a failure)."""
        self.begin()
        try:
            yield
        except BaseException as exc:
            self.abort(exc)
        self.commit(offsets, consumer)

    def _abort(self) -> None:
        """Drop what is still queued, serve the failed deliveries' reports, then abort (retried)."""
        self.producer.purge(in_queue=True, in_flight=False, blocking=False)
        for attempt in range(ABORT_ATTEMPTS):
            deadline = time.monotonic() + 5
            while len(self.producer) and time.monotonic() < deadline:
                self.producer.poll(0.1)
            try:
                self.producer.abort_transaction(ABORT_TIMEOUT_S)
                return
            except KafkaException as exc:
                e: KafkaError = exc.args[0]
                if e.fatal() or attempt == ABORT_ATTEMPTS - 1:  # a new producer instance aborts it (init_transactions)
                    raise ProducerLost(f"router transaction could not be aborted: {e.str()}") from exc
                log.warning("router: abort not done yet (%s); retrying", e.str())

    def abort(self, cause: BaseException | None = None) -> NoReturn:
        """Abort, then raise ``Lost``, the fatal ``cause``, or ``Abort``."""
        if cause is not None and producer_lost(cause):
            self._lose(cause)
        if self.open:
            try:
                self._abort()
            except ProducerLost as exc:
                self._lose(exc)
            except KafkaException as exc:  # e.g. poll() raising the fence: the transaction's state is unknown
                self._lose(ProducerLost(f"router transaction could not be aborted: {exc}"))
        self._end(False)
        if isinstance(cause, FatalError | KeyboardInterrupt | SystemExit):
            raise cause
        raise Transaction.Abort(f"batch aborted ({cause})") from cause

    def _lose(self, cause: BaseException) -> NoReturn:
        self.lost = cause
        self._end(False)
        raise Transaction.Lost(f"producer lost: {cause}") from cause

    def _end(self, committed: bool) -> None:
        self.open = False
        if committed:
            self.publisher.transaction_committed()
        else:
            self.publisher.transaction_aborted()
        for hook in self.on_end:
            hook(committed)


class Engine:
    """A transactional router worker and the target of its stage; ``run()`` blocks until stopped. See the
    module docstring."""

    def __init__(self, topology: Topology, *, datadir: Path | None = None, instance_id: str | None = None,
                 session_timeout: float = 10.0, reload_interval: float = 1.0, key_store: str = "memory",
                 batch_size: int = 5000, live: LiveTopology | None = None) -> None:
        k = topology.kafka
        self.topology = topology
        self.live = live
        """Where new topology revisions come from (``cdx.topology.live``); None: never reloads."""
        self.plan = RoutingPlan(topology)
        self.config = client_config(k.bootstrap_servers, k.security)
        self.batch_size, self.reload_interval, self._next_check = batch_size, reload_interval, 0.0
        ensure_engine_topics(topology, self.plan)
        self.instance_id = instance_id or default_instance_id(datadir)
        if live is not None:
            live.set_instances([self.instance_id])
        self.stale_producer = False
        """A delivery failed: the producer is replaced before the next batch (``_delivery_failed``)."""
        self.producer = self.open_producer()
        self.store = SchemaStore(k.bootstrap_servers, schemas_topic(k.topic_prefix), consumer_config=self.config)
        publisher = SchemaPublisher(self.producer, schemas_topic(k.topic_prefix), transactional=True)
        codec = make_codec(k.codec_config(), store=self.store, publisher=publisher)
        self.keys = KeyState(self.config, keys_topic(k.topic_prefix), open_store(key_store, datadir))
        self.progress = Progress(self.config, progress_topic(k.topic_prefix))
        self.router = RecordRouter(self.plan, codec, self.keys, self.producer, dlq_topic(k.topic_prefix))
        self.txn = Transaction(self.producer, publisher, [self._ended])
        self.recovery = Recovery(self)
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
        self.reload_requested = False
        self.restart: str | None = None
        self.stop = threading.Event()
        self.cadence = Cadence(batch_size)
        self.source = TableTopics(self, self.cadence, self.activator.activate, self.stop)
        self.letters: list[tuple[Message, str]] = []
        self._offsets: Offsets = {}
        self._records, self._sent, self._started, self._routed = 0, 0, 0.0, 0.0

    def stage(self) -> Stage[Message, Message, Offsets]:
        """The stage definition :func:`run_stage` runs: the table topics into this engine."""
        return Stage("router", self.source, self, self.hold_letter,
                     between_batches=self._between_batches,
                     options=StageOptions(max_records=self.batch_size, max_wait=0.2, max_backoff=10.0))

    def run(self) -> int:
        """Route until SIGTERM/SIGINT (exit code 0), a fatal error (1), or a topology revision that needs a new
        process (the process re-executes itself)."""
        log.info("router: transactional engine %s", self.instance_id)
        signal.signal(signal.SIGHUP, self._hup)
        code = 0
        try:
            run_stage(self.stage(), self.stop, handle_signals=True)
        except FatalError as exc:
            log.critical("router: stopping: %s", exc)
            code = 1
        finally:
            if self.live is not None:
                self.live.close()
        if self.restart and code == 0:
            os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])
        return code

    def _between_batches(self) -> None:
        """Replace a lost producer; take a new topology revision (every ``reload_interval``, or after SIGHUP)."""
        if self.stale_producer and self.txn.lost is None:  # a lost producer is replaced by the recovery below
            log.warning("router: a record was refused by the broker; the aborted transaction's producer is replaced")
            with retriable("replacing the producer after a failed delivery"):
                self.replace_producer()
        if self.txn.lost is not None:
            try:
                self.recovery.recover(self.txn.lost)
            except (KafkaException, RetriableError) as exc:
                self.txn.lost = exc
                raise RetriableError(f"router: recovery from a lost producer failed: {exc}") from exc
            self.txn.lost = None
        if self.reload_requested or time.monotonic() >= self._next_check:
            self._next_check = time.monotonic() + self.reload_interval
            with retriable("topology reload"):
                self.activator.maybe_reload()
            if self.restart is not None:
                self.stop.set()

    # ------------------------------------------------------------------ the target
    def open(self) -> None:
        """Read the key state and the progress (retried while they cannot be, e.g. a dead worker's
        transaction still open)."""
        with retriable("reading the key state and the progress"):
            restored = self.keys.restore()
            self.progress.sync()
        log.info("router: key state restored (%d changelog records, %d keys)", restored, len(self.keys.store))

    def begin(self) -> None:
        self._started = time.monotonic()
        self.txn.begin()

    def write(self, items: Sequence[Message], position: Offsets) -> None:
        """Route ``items`` and write the progress they make into the open transaction."""
        route, sent = self.router.route, self.router.sent
        try:
            for msg, reason in self.letters:
                self.router.to_dead_letters(msg, reason)
            for m in items:
                route(m)
            self.write_progress(position)
        except BaseException as exc:
            self.txn.abort(exc)  # raises: Abort or Lost (retriable), or the fatal cause
        self.letters = []
        self._offsets, self._records, self._routed = position, len(items), time.monotonic()
        self._sent = self.router.sent - sent

    def commit(self) -> None:
        self.txn.commit([TopicPartition(t, p, o) for (t, p), o in self._offsets.items()], self.consumer)
        self.cadence.observe(self._records, self._routed - self._started)
        metrics.RECORDS_OUT.inc(self._sent)
        log.debug("router: committed a batch of %d records, %d routed: %s", self._records, self.router.sent,
                  self._offsets)

    def abort(self, error: BaseException | None = None) -> None:
        self.letters = []
        if self.txn.open:
            try:
                self.txn.abort(error)
            except (RetriableError, FatalError) as exc:
                log.debug("router: %s", exc)

    def hold_letter(self, msg: Message, exc: SkippableError) -> None:
        """The stage's ``dead_letter``, written with the next transaction (``RecordRouter`` dead-letters what
        it cannot route itself, in the batch's own transaction; this is for records the loop refuses)."""
        self.letters.append((msg, exc.reason))

    def close(self) -> None:
        self.producer.flush(30)
        self.store.close()

    # ------------------------------------------------------------------ hooks
    def replace_producer(self) -> None:
        """After a lost producer: a new one, same transactional id (``init_transactions`` aborts its leftovers)."""
        self.producer.purge(in_queue=True, in_flight=True, blocking=False)
        producer = self.open_producer()
        self.producer = self.txn.producer = self.txn.publisher.producer = self.router.producer = producer
        self.activator._legacy = None  # the faust-upgrade reader held the lost producer: built again if needed
        self.stale_producer = False

    def open_producer(self) -> Producer:
        """A new transactional producer (``init_transactions`` done: any open transaction of the id aborted)."""
        k = self.topology.kafka
        config = size_limited(producer_config(
            self.config, transactional_id=transactional_id(self.topology, self.instance_id),
            transaction_timeout_ms=TRANSACTION_TIMEOUT_MS, queue_buffering_max_messages=500_000,
            **{"delivery.report.only.error": True}), k.max_message_bytes)
        producer = Producer({**config, "on_delivery": self._delivery_failed})
        producer.init_transactions(60)
        return producer

    def _delivery_failed(self, err: KafkaError | None, _msg: Message) -> None:
        """The producers' delivery callback, for failures only (``delivery.report.only.error``). A record the
        broker refused (too large for its topic, say) makes the transaction abort, and the producer's sequence
        numbers stay ahead of the broker's: its next transaction would fail (OUT_OF_ORDER_SEQUENCE_NUMBER) only
        after the transaction timeout. The producer is replaced before the next batch instead (``init_transactions``
        of the same transactional id: a new epoch, sequences from 0). Purged records (an abort) do not count."""
        if err is not None and err.code() not in (KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT):
            self.stale_producer = True

    def _ended(self, committed: bool) -> None:
        if committed:
            self.keys.commit()
            self.progress.commit()
        else:
            self.keys.abort()
            self.progress.abort()
            self.router.reset()

    def write_progress(self, ends: dict[TP, int], groups: dict[TP, list[str]] | None = None) -> None:
        """Progress records for ``ends`` (every group of the topic, or ``groups[tp]``) into the transaction."""
        for (topic, p), end in ends.items():
            for g in (groups or {}).get((topic, p), self.plan.groups_of(topic)):
                k = (g, topic, p)
                if self.progress.set(k, end):
                    self.router.produce(self.progress.topic, encode_key(k), self.progress.encoded(k), None)

    def _hup(self, _signum: int, _frame: Any) -> None:
        self.reload_requested = True
