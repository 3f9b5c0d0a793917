"""``ChannelSink``: one channel (or offline-register) database fed from its group topic.

Contract
- One confluent-kafka consumer (group ``<prefix>-sink-<owner>``, static member with the same
  ``group.instance.id``, read_committed, no auto commit) and one database connection per sink;
  nothing is shared with other sinks except the codec and the dead-letter producer.
- **Resumable**: the database is the only record of progress. Its offsets are loaded before
  subscribing, partitions are positioned at them on assignment (at the beginning when none),
  and every batch commits rows + offsets + watermarks in one transaction (``commit_batch``).
  Offsets are also committed to Kafka afterwards, asynchronously, for lag monitoring only;
  they are never read.
- **Idempotent**: re-sent changes (source offset covered by the stored watermark) are skipped,
  so a change is applied at most once; nothing is skipped that the database has not recorded,
  so none is missed.
- **Order**: one partition is applied in offset order; within a batch changes are collapsed
  per key, upserts go parents first and deletes children first (see ``apply``).
- **Transient failures** (``RetriableError``: database or schema store unreachable, locks,
  deadlocks; any failure to *open* the database counts as one): the batch is dropped
  uncommitted, the partitions are paused, the consumer keeps polling (group membership), and
  the database is retried with exponential backoff; once it answers, the partitions are
  rewound to the offsets it holds. Other sinks are not affected.
- **Poison records** (``SkippableError``): the batch is split in halves down to the single
  record that fails; it is dead-lettered and its offset committed with its (sub-)batch, unless the
  failure is systematic (``breaker``: later records fail the same way): then the sink stops.
- **Fatal errors** (anything else) stop this sink only; ``status`` says ``failed``.
- **Download sessions** (``sessions``): every committed batch writes an ``Applied`` session in
  its transaction; a refused batch (before isolation), a batch dropped by a transient failure
  (once the database answers again) and a fatal error write a ``Failed`` one in their own.
- **Missed deletes** (``resync``): whenever the database is opened (start, and after it was
  unreachable) the sink checks whether deletes may have been lost (stored offsets below the
  topic's earliest, or the last session older than ``delete.retention.ms`` while behind) and
  then resyncs from the beginning of the topic before consuming; the consumer runs with
  ``auto.offset.reset=error``, so an offset that falls out of the log while running triggers a
  resync too instead of a silent jump.
- **One applier per database** (``lock``): the sink takes the channel lock in the channel database
  before it loads its state or joins its consumer group, confirms it in every batch transaction
  and renews it while idle. A sink that finds it held (another ``cdx sink`` for the same database)
  stands by without joining the group, says so once per back-off step naming the holder, and
  takes over when the holder stops or dies; a sink that loses it goes back to standing by.
- **Changed row filters** (``respec``: a channel filter added, removed or given another column, or
  the channel's filter attribute changed, e.g. by a topology revision the host restarted the sink
  with): whenever the database is opened, the rules it was last made consistent with (kept in it)
  are compared with the spec's; when they differ the sink resyncs from its compacted group topic
  under the new rules (rows that now pass come in, rows that no longer do are deleted) and stores
  them.
- ``stop()`` (SIGTERM) lets the current batch commit, then ``run`` returns.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition

from cdx.cleanup import quietly
from cdx.codec import Codec
from cdx.connectors.sink import metrics, respec
from cdx.connectors.sink.apply import BatchResult, batch_session, commit_batch
from cdx.connectors.sink.breaker import FailureBreaker, dry_run
from cdx.connectors.sink.gate import Gate
from cdx.connectors.sink.gating import GatedSink
from cdx.connectors.sink.lock import ChannelLock, ChannelLocked
from cdx.connectors.sink.records import Decoder, Record, decode_message
from cdx.connectors.sink.resync import CAUGHT_UP_KEY, Resync, ResyncReport, resync_reason
from cdx.connectors.sink.sessions import FAILED, Session, SessionLog, utcnow
from cdx.connectors.sink.spec import SinkSpec
from cdx.connectors.sink.state import SinkState, StateStore
from cdx.connectors.sink.tables import TableManager
from cdx.connectors.sink.tools import open_database
from cdx.dialects import get_dialect
from cdx.dialects.base import cdx_category
from cdx.errors import CdxError, FatalError, RetriableError, SkippableError
from cdx.kafka.batches import next_batch
from cdx.kafka.config import consumer_config

log = logging.getLogger("cdx.sink")

STANDBY_RETRY = 5.0
"""Seconds between a standing-by sink's attempts to take the channel lock."""
_STANDBY_LOG = -10_001
"""``_first_in_a_while`` key of the standby message (logged once a minute)."""


class DeadLetterSink(Protocol):
    def send(self, owner_id: str, kind: str, group_topic: str, rec: Record, error: str,
             extra: Mapping[str, Any] | None = None) -> None:
        """Deliver durably or raise ``RetriableError``."""


@dataclass
class SinkSettings:
    batch_size: int = 5000
    """Records consumed per database transaction (at most)."""
    poll_timeout: float = 0.5
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    static_membership: bool = True
    commit_to_kafka: bool = True
    """Also commit offsets to Kafka (informational: lag monitoring), see ``kafka_commit_interval``."""
    kafka_commit_interval: float = 1.0
    """Seconds between those informational commits while busy (an idle sink commits at once)."""
    queued_max_kbytes: int = 4096
    """librdkafka prefetch buffer per sink (keeps memory low with many sinks per process)."""
    session_timeout_ms: int = 10_000
    """Consumer-group session timeout: how long a static member outlives its process (``cdx status``
    and the commands that refuse to run beside a sink see it as running meanwhile)."""
    session_retention_days: float = 14.0
    """Download sessions older than this are deleted (0: keep by count only)."""
    session_max_rows: int = 50_000
    """Download sessions kept per database at most (0: no limit)."""
    resync_check: bool = True
    """Check for missed deletes whenever the database is opened (see ``resync``)."""
    idle_mark_interval: float = 300.0
    """While idle (nothing to consume), record at most this often that the database is current
    (state key ``caught_up``): the missed-delete check then does not mistake a quiet topic for a
    long outage."""
    stand_by: bool = True
    """A sink that finds the channel lock held stands by until it is free; False (one-shot sinks such as
    ``cdx channel bootstrap``): it stops with the lock's message instead."""
    consumer_overrides: dict[str, Any] = field(default_factory=dict)
    controls: bool = True
    """Obey ``cdx channel pause`` and the distribution schedules (``gate``); one-shot repairs
    (bootstrap, replay) apply everything."""
    systematic_after: int = 10
    """Refusals in a row with the same error (no record applied between) that stop the channel
    instead of dead-lettering on (see ``breaker``; within a batch, probing later records decides sooner)."""


@dataclass
class Totals:
    applied: int = 0
    duplicates: int = 0
    filtered: int = 0
    dead_lettered: int = 0
    batches: int = 0
    resyncs: int = 0


class ChannelSink(GatedSink):
    """One sink; ``run()`` blocks until ``stop()`` (see module docstring)."""

    def __init__(self, spec: SinkSpec, kafka_config: Mapping[str, Any], codec: Codec,
                 dead_letters: DeadLetterSink, settings: SinkSettings | None = None,
                 stop: threading.Event | None = None) -> None:
        self.spec = spec
        self.settings = settings or SinkSettings()
        self.dialect = get_dialect(spec.dialect)
        self.decoder = Decoder(codec, spec.topic)
        self.store = StateStore(self.dialect, spec.topic)
        self.sessions = SessionLog(self.dialect, spec.owner_id, retention_days=self.settings.session_retention_days,
                                   max_rows=self.settings.session_max_rows)
        self.tables = TableManager(self.dialect, spec.extension_schemas)
        self.lock = ChannelLock(self.dialect, spec.consumer_group, spec.owner_id)
        self.dead_letters = dead_letters
        self.kafka_config = dict(kafka_config)
        self.state = SinkState()
        self.totals = Totals()
        self.status = "starting"
        self.last_error: str | None = None
        self.conn: Any = None
        self.consumer: Consumer | None = None
        self._stop = stop or threading.Event()
        self._delay = self.settings.backoff_initial
        self._pending_seek: dict[int, int] = {}
        self._warned: dict[int, float] = {}
        self._labels = {"channel": spec.owner_id}
        self.positions: dict[int, int] = {}
        """Consumer positions seen while idle (everything before them is handled): with ``state``, tells
        whether the sink reached given end offsets (``caught_up``)."""
        self.last_resync: ResyncReport | None = None
        self.consumer_restarts = 0
        self._kafka_pending: dict[int, int] = {}
        self._kafka_committed_at = -float("inf")
        self._resync_due: str | None = None
        self._failed_batch: Session | None = None
        self._idle_marked = -float("inf")
        self._batch: list[Record] = []
        self.breaker = FailureBreaker(spec.owner_id, self._dry_run, threshold=self.settings.systematic_after)
        self.gate = Gate(spec, self.dialect) if self.settings.controls else None
        self.held: dict[int, int] = {}
        """Partitions stopped at a held-back record (``gate``): partition -> its offset."""

    @property
    def name(self) -> str:
        return self.spec.owner_id

    def stop(self) -> None:
        self._stop.set()

    def caught_up(self, ends: Mapping[int, int]) -> bool:
        """True once every partition is applied up to ``ends`` (e.g. end offsets observed earlier)."""
        return all(max(self.state.offsets.get(p, 0), self.positions.get(p, 0)) >= end
                   for p, end in ends.items() if end > 0)

    # ------------------------------------------------------------------------------- loop
    def run(self) -> None:
        try:
            if not self._open_with_retry():
                return
            self._subscribe()
            self.status = "running"
            while not self._stop.is_set():
                self._refresh_gate()
                msgs = self._poll()
                if self._resync_due is not None:
                    if not self._paused():  # paused: the resync waits for resume (the channel does not move)
                        self._resync_while_running()
                elif msgs:
                    self._handle(msgs)
            self.status = "stopped"
        except Exception as e:
            self.status, self.last_error = "failed", f"{type(e).__name__}: {e}"
            log.error("sink %s stopped: %s", self.name, self.last_error, exc_info=not isinstance(e, CdxError))
            self.sessions.record_alone(self.conn, Session(
                channel=self.name, group_topic=self.spec.topic, status=FAILED, started_at=utcnow(),
                error=f"sink stopped: {self.last_error}"))
            raise
        finally:
            self._close()

    def _handle(self, msgs: list[Message]) -> None:
        started = utcnow()
        records: list[Record] = []
        try:
            records = self._cut([decode_message(self.decoder, m) for m in msgs])
            if records:
                self._apply_isolating(records)
            self._delay = self.settings.backoff_initial
        except RetriableError as e:
            seen = records or [Record(m.partition() or 0, m.offset() or 0, None, None) for m in msgs]
            self._failed_batch = batch_session(self.spec, seen, None, None, started, status=FAILED,
                                               error=f"batch dropped, retried: {e}")
            self._recover(e)

    # ----------------------------------------------------------------------------- resync
    def _resync(self, reason: str) -> None:
        assert self.conn is not None
        report = Resync(self.conn, self.dialect, self.spec, self.store, self.tables, self.decoder, self.kafka_config,
                        self._dead_letter, self.sessions, guard=self.lock.confirm).run(reason)
        self.state = report.state
        self.last_resync = report
        self.totals.resyncs += 1
        metrics.RESYNCS.labels(**self._labels).inc()

    def _resync_while_running(self) -> None:
        reason, self._resync_due = self._resync_due or "", None
        try:
            self._resync(reason)
            self._rewind()
        except Exception as e:
            if self._category(e) is not RetriableError:
                raise
            self._recover(e)

    # ------------------------------------------------------------------------------ apply
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
        self._commit_kafka(plan.offsets)
        return result

    def _commit_kafka(self, offsets: Mapping[int, int], *, now: bool = False) -> None:
        """Mirror the database's offsets to Kafka (informational), at most every ``kafka_commit_interval``
        seconds and whenever the sink is idle: a commit per small batch would queue offset commits ahead
        of the heartbeats on the coordinator connection (measured: session time-outs under load)."""
        if not self.settings.commit_to_kafka or self.consumer is None:
            return
        self._kafka_pending.update(offsets)
        if not self._kafka_pending:
            return
        if not now and time.monotonic() - self._kafka_committed_at < self.settings.kafka_commit_interval:
            return
        pending, self._kafka_pending = self._kafka_pending, {}
        self._kafka_committed_at = time.monotonic()
        try:
            self.consumer.commit(offsets=[TopicPartition(self.spec.topic, p, o) for p, o in pending.items()],
                                 asynchronous=True)
        except KafkaException as e:
            log.debug("sink %s: informational offset commit failed: %s", self.name, e)

    # -------------------------------------------------------------------------- database
    def _open(self) -> None:
        self._close_db()
        self.conn = open_database(self.spec)
        with self.dialect.transaction(self.conn):
            self.store.ensure(self.conn)
        self.lock.acquire(self.conn)
        with self.dialect.transaction(self.conn):
            self.sessions.ensure(self.conn)
            self.state = self.store.load(self.conn)
            refilter = respec.filter_change(self.conn, self.dialect, self.store.namespace, self.spec)
        metrics.UP.labels(**self._labels).set(1)
        reason = resync_reason(self.conn, self.dialect, self.spec, self.state, self.kafka_config) \
            if self.settings.resync_check else None
        reason = "; ".join(r for r in (refilter, reason) if r) or None
        if reason is not None and self._paused(refresh=True):
            self._resync_due = reason
        elif reason is not None:
            self._resync(reason)

    def _open_with_retry(self) -> bool:
        """Open the database and load the state, retrying transient failures. False if stopped."""
        while not self._stop.is_set():
            try:
                self._open()
                return True
            except Exception as e:
                if self._category(e) is not RetriableError:
                    raise
                self._wait_after(e)
        return False

    def _wait_after(self, error: BaseException) -> None:
        self.status, self.last_error = "waiting", f"{type(error).__name__}: {error}"
        metrics.UP.labels(**self._labels).set(0)
        metrics.RETRIES.labels(**self._labels).inc()
        if isinstance(error, ChannelLocked) and not self.settings.stand_by:
            raise FatalError(str(error).replace("standing by until it stops", "stop it first")) from error
        if isinstance(error, ChannelLocked):  # stand by outside the consumer group: the holder is in it
            self.status, self.last_error = "standby", str(error)
            self._close_consumer()
            self._close_db()
            if self._first_in_a_while(_STANDBY_LOG):
                log.warning("%s (checking every %.0fs)", error, STANDBY_RETRY)
            self._idle(STANDBY_RETRY)
            return
        log.warning("sink %s: %s; retrying in %.1fs", self.name, self.last_error, self._delay)
        self._idle(self._delay)
        self._delay = min(self._delay * 2, self.settings.backoff_max)

    def _close_consumer(self) -> None:
        if self.consumer is not None:
            try:
                self.consumer.close()
            except Exception as e:
                log.debug("sink %s: consumer close: %s", self.name, e)
            self.consumer = None

    def _close_db(self) -> None:
        if self.conn is not None:
            try:
                self.lock.release(self.conn)
            except Exception as e:  # the connection is going anyway; a lease then expires on its own
                log.debug("sink %s: lock release: %s", self.name, e)
            quietly(self.conn.close, f"sink {self.name}: closing the channel connection", log)
            self.conn = None

    def _recover(self, error: BaseException) -> None:
        """Drop the uncommitted batch, wait for the database, rewind to the offsets it holds."""
        self._close_db()
        self._pause()
        self._wait_after(error)
        if not self._open_with_retry():
            return
        if self._failed_batch is not None:
            self.sessions.record_alone(self.conn, self._failed_batch)
            self._failed_batch = None
        if self.consumer is None:  # it stood by: join the group again, at the database's offsets
            self._subscribe()
        else:
            self._rewind()
        self.status, self.last_error = "running", None
        log.info("sink %s: database available again; resuming", self.name)

    # ----------------------------------------------------------------------------- kafka
    def _subscribe(self) -> None:
        s = self.settings
        kb = s.queued_max_kbytes
        extra: dict[str, Any] = {"queued.max.messages.kbytes": kb,
                                 # an offset that left the log is a resync, never a silent jump
                                 "auto.offset.reset": "error", "session.timeout.ms": s.session_timeout_ms,
                                 "fetch.max.bytes": max(1024 * kb // 2, 1 << 20),  # >= message.max.bytes
                                 "max.partition.fetch.bytes": max(64 << 10, min(1 << 20, 1024 * kb // 4))}
        if s.static_membership:
            extra["group.instance.id"] = self.spec.consumer_group
        cfg = consumer_config(self.kafka_config, self.spec.consumer_group)
        cfg.update(extra)
        cfg.update(s.consumer_overrides)
        self.consumer = Consumer(cfg)
        self.consumer.subscribe([self.spec.topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
                                on_lost=self._on_revoke)

    def _new_consumer(self, err: KafkaError) -> None:
        """Replace a consumer that failed fatally (e.g. a static member fenced after its session timed
        out on an overloaded broker). Safe at any point: positions come from the database on assignment,
        and nothing of the dropped consumer's fetched records was committed."""
        log.warning("sink %s: Kafka consumer failed (%s); starting a new one from the database's offsets",
                    self.name, err.str())
        metrics.CONSUMER_RESTARTS.labels(**self._labels).inc()
        self.consumer_restarts += 1
        self._close_consumer()
        self._pending_seek.clear()
        self.held.clear()
        self.positions.clear()
        self._stop.wait(1.0)
        if not self._stop.is_set():
            self._subscribe()

    def _on_assign(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        for tp in parts:
            tp.offset = self.state.offsets.get(tp.partition, OFFSET_BEGINNING)
            self.held.pop(tp.partition, None)
            self._pending_seek.pop(tp.partition, None)
            self.positions.pop(tp.partition, None)
        log.info("sink %s: assigned %s partitions %s at %s", self.name, self.spec.topic,
                 [tp.partition for tp in parts], [tp.offset for tp in parts])
        consumer.incremental_assign(parts)

    def _on_revoke(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        for tp in parts:
            self._pending_seek.pop(tp.partition, None)
            self.positions.pop(tp.partition, None)
            self.held.pop(tp.partition, None)
        consumer.incremental_unassign(parts)

    def _poll(self) -> list[Message]:
        assert self.consumer is not None
        if self._pending_seek:
            self._seek(dict(self._pending_seek))
        msgs = next_batch(self.consumer, self.settings.batch_size, self.settings.poll_timeout)
        out = []
        for m in msgs:
            err = m.error()
            if err is None:
                if m.partition() not in self._pending_seek and m.partition() not in self.held:
                    out.append(m)
                continue
            if err.fatal() or err.code() == KafkaError._FATAL:
                self._new_consumer(err)
                return []
            if err.code() == KafkaError._AUTO_OFFSET_RESET:
                log.warning("sink %s: %s", self.name, err)
                self._resync_due = f"the consumer's offset left the log while running: {err.str()}"
                continue
            if err.code() != KafkaError._PARTITION_EOF and self._first_in_a_while(err.code()):
                hint = " (the router creates it)" if err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART else ""
                log.warning("sink %s: %s%s", self.name, err, hint)
        if not msgs and not self._pending_seek:
            self._commit_kafka({}, now=True)
            self._note_positions()
            self._mark_idle()
            self._keep_lock()
        return out

    def _keep_lock(self) -> None:
        """Idle: renew a lease; a sink that lost the lock goes back to standing by."""
        try:
            if self.conn is not None:
                self.lock.renew(self.conn)
        except ChannelLocked as e:
            self._recover(e)
        except Exception as e:  # the next batch deals with a database that went away
            log.debug("sink %s: cannot renew the channel lock: %s", self.name, e)

    def _mark_idle(self) -> None:
        """Idle: record (throttled) when the database was last known current, in its own transaction."""
        now = time.monotonic()
        if self.conn is None or self.consumer is None or now - self._idle_marked < self.settings.idle_mark_interval:
            return
        try:  # only at the end of every assigned partition, as of the consumer's last fetch (no broker call)
            parts = self.consumer.assignment()
            for tp in parts:
                _, high = self.consumer.get_watermark_offsets(tp, cached=True)
                if high < 0 or self.positions.get(tp.partition, -1) < high:
                    return
        except KafkaException:
            return
        if not parts:
            return
        self._idle_marked = now
        try:
            with self.dialect.transaction(self.conn):
                self.dialect.write_state(self.conn, self.store.namespace, {CAUGHT_UP_KEY: utcnow().isoformat()})
        except Exception as e:  # the next batch deals with a database that went away
            log.debug("sink %s: cannot record the idle mark: %s", self.name, e)

    def _note_positions(self) -> None:
        """Idle: every record before the consumer's positions is handled (committed or skipped)."""
        assert self.consumer is not None
        try:
            parts = self.consumer.assignment()
            if parts:
                for tp in self.consumer.position(parts):
                    if tp.offset >= 0:
                        self.positions[tp.partition] = tp.offset
        except KafkaException as e:
            log.debug("sink %s: position: %s", self.name, e)

    def _first_in_a_while(self, code: int, every: float = 60.0) -> bool:
        """Rate-limits repeated consumer warnings (one per error code per minute)."""
        now = time.monotonic()
        if now - self._warned.get(code, -every) < every:
            return False
        self._warned[code] = now
        return True

    def _idle(self, seconds: float) -> None:
        """Wait ``seconds`` (or until stopped) while serving the consumer; messages are discarded
        (the caller rewinds to the database's offsets afterwards)."""
        deadline = time.monotonic() + seconds
        while not self._stop.is_set() and (left := deadline - time.monotonic()) > 0:
            if self.consumer is None:
                self._stop.wait(left)
            else:
                self.consumer.consume(self.settings.batch_size, min(left, 0.5))

    def _pause(self) -> None:
        if self.consumer is not None:
            try:
                self.consumer.pause(self.consumer.assignment())
            except KafkaException as e:
                log.debug("sink %s: pause: %s", self.name, e)

    def _rewind(self) -> None:
        if self.consumer is None:
            return
        parts = self.consumer.assignment()
        self.positions.clear()
        self.held.clear()
        self._seek({tp.partition: self.state.offsets.get(tp.partition, OFFSET_BEGINNING) for tp in parts})
        try:
            self.consumer.resume(parts)
        except KafkaException as e:
            log.debug("sink %s: resume: %s", self.name, e)

    def _seek(self, offsets: Mapping[int, int]) -> None:
        assert self.consumer is not None
        for p, off in offsets.items():
            try:
                self.consumer.seek(TopicPartition(self.spec.topic, p, off))
                self._pending_seek.pop(p, None)
            except KafkaException as e:
                log.debug("sink %s: seek %s[%d] to %d deferred: %s", self.name, self.spec.topic, p, off, e)
                self._pending_seek[p] = off

    def _close(self) -> None:
        self._close_consumer()
        self._close_db()
        if self.status not in ("failed",):
            self.status = "stopped"
