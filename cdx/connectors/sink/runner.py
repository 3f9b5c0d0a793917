"""``ChannelSink``: one channel (or offline-register) database fed from its group topic.

Contract
- No thread and no Kafka consumer of its own: a host's shared consumer (``feed``) offers it the
  records of its group topic at the positions it wants, and a host's worker pool calls ``step()``
  (never two at once for one sink): open the database, apply a batch from the inbox, or keep house
  while idle. One database connection per sink, open while it runs.
- **Resumable**: the database is the only record of progress. Its offsets are loaded when it is
  opened, the sink wants its partitions from them (from the beginning when none), and every batch
  commits rows + offsets + watermarks in one transaction (``commit_batch``).
- **Idempotent**: re-sent changes (source offset covered by the stored watermark) are skipped,
  so a change is applied at most once; nothing is skipped that the database has not recorded,
  so none is missed.
- **Order**: one partition is applied in offset order; within a batch changes are collapsed
  per key, upserts go parents first and deletes children first (see ``apply``).
- **Transient failures** (``RetriableError``: database or schema store unreachable, locks,
  deadlocks; any failure to *open* the database counts as one): the batch is dropped
  uncommitted, the sink stops wanting records (the others sharing its consumer go on) and retries
  the database with ``Backoff``; once it answers, it wants its partitions again from the offsets the
  database holds.
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
  then resyncs from the beginning of the topic before consuming; an offset that falls out of the
  log while running (the feed's ``auto.offset.reset=error``) triggers a resync too.
- **One applier per database** (``lock``): the sink takes the channel lock in the channel database
  before it loads its state, confirms it in every batch transaction and renews it while idle. A sink
  that finds it held (another ``cdx sink`` for the same database) stands by, says so once a minute
  naming the holder, and takes over when the holder stops or dies; a sink that loses it goes back to
  standing by.
- **Changed row filters** (``respec``): checked whenever the database is opened; a change resyncs.
- ``stop()`` (SIGTERM) lets the current batch commit; ``close()`` then releases the lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Message

from cdx.cleanup import quietly
from cdx.codec import Codec
from cdx.connectors.sink import metrics, respec
from cdx.connectors.sink.applying import ApplyingSink
from cdx.connectors.sink.breaker import FailureBreaker
from cdx.connectors.sink.gate import Gate
from cdx.connectors.sink.lock import ChannelLock, ChannelLocked
from cdx.connectors.sink.records import Decoder, Record, decode_ahead
from cdx.connectors.sink.resync import CAUGHT_UP_KEY, ResyncReport, resync_reason
from cdx.connectors.sink.sessions import FAILED, Session, SessionLog, utcnow
from cdx.connectors.sink.settings import DeadLetterSink, SinkSettings, Totals
from cdx.connectors.sink.spec import SinkSpec
from cdx.connectors.sink.state import SinkState, StateStore
from cdx.connectors.sink.tables import TableManager
from cdx.connectors.sink.tools import open_database
from cdx.dialects import get_dialect
from cdx.errors import CdxError, FatalError, RetriableError
from cdx.stage.backoff import Backoff

__all__ = ["ChannelSink", "DeadLetterSink", "SinkSettings", "Totals"]

log = logging.getLogger("cdx.sink")

STANDBY_RETRY = 5.0
"""Seconds between a standing-by sink's attempts to take the channel lock."""
STANDBY_LOG_EVERY = 60.0


class ChannelSink(ApplyingSink):
    """One sink, driven by a host (see module docstring)."""

    def __init__(self, spec: SinkSpec, kafka_config: Mapping[str, Any], codec: Codec,
                 dead_letters: DeadLetterSink, settings: SinkSettings | None = None,
                 stop: threading.Event | None = None, prepare: Callable[[], None] | None = None) -> None:
        self.spec = spec
        self.settings = s = settings or SinkSettings()
        self.dialect = get_dialect(spec.dialect)
        self.decoder = Decoder(codec, spec.topic)
        self.store = StateStore(self.dialect, spec.topic)
        self.sessions = SessionLog(self.dialect, spec.owner_id, retention_days=s.session_retention_days,
                                   max_rows=s.session_max_rows)
        self.tables = TableManager(self.dialect, spec.extension_schemas)
        self.lock = ChannelLock(self.dialect, spec.consumer_group, spec.owner_id)
        self.dead_letters = dead_letters
        self.kafka_config = dict(kafka_config)
        self.state, self.totals = SinkState(), Totals()
        self.status = "starting"
        self.last_error: str | None = None
        self.conn: Any = None
        self._stop = stop or threading.Event()
        self._labels = {"channel": spec.owner_id}
        self.positions: dict[int, int] = {}
        """Positions up to which everything is handled (seen while idle): with ``state``, tells whether
        the sink reached given end offsets (``caught_up``)."""
        self.last_resync: ResyncReport | None = None
        self.consumer_restarts = 0
        self.breaker = FailureBreaker(spec.owner_id, self._dry_run, threshold=s.systematic_after)
        self.gate = Gate(spec, self.dialect) if s.controls else None
        self.held: dict[int, int] = {}
        self.backoff = Backoff(s.backoff_initial, s.backoff_max)
        self.ends_seen: Callable[[], Mapping[int, int]] = dict
        """The group topic's end offsets as of the shared consumer's last fetch (set by the host)."""
        self.phase = "prepare" if prepare is not None else "opening"
        self.due = 0.0
        """Monotonic time of the next retry (while opening) or housekeeping step (while running)."""
        self._prepare = prepare
        self._resync_due: str | None = None
        self._failed_batch: Session | None = None
        self._batch: list[Record] = []
        self._idle_marked = -float("inf")
        self._standby_logged = -float("inf")
        self._was_down = False
        self._mu = threading.Lock()
        """Guards what the feed thread and the workers share: inbox, positions wanted, held, scheduling."""
        self._step_lock = threading.Lock()
        self._inbox: deque[Message | Record] = deque()
        self._next: dict[int, int] = {}
        self._accepting = False
        self._scheduled = False
        self._limit = max(2 * s.batch_size, 100)

    @property
    def topic(self) -> str:
        return self.spec.topic

    def stop(self) -> None:
        self._stop.set()

    def caught_up(self, ends: Mapping[int, int]) -> bool:
        """True once every partition is applied up to ``ends`` (e.g. end offsets observed earlier)."""
        return all(max(self.state.offsets.get(p, 0), self.positions.get(p, 0)) >= end
                   for p, end in ends.items() if end > 0)

    # ------------------------------------------------------------------------ the feed's side
    def wants(self, partitions: list[int]) -> dict[int, int] | None:
        with self._mu:
            if not self._accepting or self._resync_due is not None or len(self._inbox) >= self._limit:
                return None
            return {p: self._next.get(p, OFFSET_BEGINNING) for p in partitions if p not in self.held}

    def offer(self, partition: int, offset: int, cursor: int, msg: Message) -> bool:
        item = decode_ahead(self.decoder, msg) if self.settings.decode_ahead and len(self._inbox) < self._limit else msg
        with self._mu:
            if not self._accepting or partition in self.held or len(self._inbox) >= self._limit:
                return False
            if not cursor <= self._next.get(partition, OFFSET_BEGINNING) <= offset:
                return False
            self._inbox.append(item)
            self._next[partition] = offset + 1
            return True

    def skip_to(self, partition: int, cursor: int, position: int) -> None:
        with self._mu:
            if self._accepting and partition not in self.held \
                    and cursor <= self._next.get(partition, OFFSET_BEGINNING) < position:
                self._next[partition] = position

    def resync_needed(self, partition: int, cursor: int, reason: str) -> None:
        with self._mu:
            if self._accepting and self._next.get(partition, OFFSET_BEGINNING) <= cursor:
                self._resync_due = reason

    def consumer_replaced(self) -> None:
        self.consumer_restarts += 1
        metrics.CONSUMER_RESTARTS.labels(**self._labels).inc()

    # ---------------------------------------------------------------------- the pool's side
    def claim(self) -> bool:
        """Whether the caller may queue this sink for a worker (it is not queued already)."""
        with self._mu:
            if self._scheduled:
                return False
            self._scheduled = True
            return True

    def release(self, now: float) -> bool:
        """After a step: True (and still claimed) when there is more to do at once."""
        with self._mu:
            self._scheduled = self.has_work(now)
            return self._scheduled

    def has_work(self, now: float) -> bool:
        """Whether a step is due: records in the inbox, a resync, a retry or housekeeping time."""
        if self._stop.is_set() or self.phase in ("failed", "stopped"):
            return False
        if self.phase != "running":
            return now >= self.due
        return bool(self._inbox) or now >= self.due or (self._resync_due is not None and not self._paused())

    def step(self) -> None:
        """One unit of work: open (or retry), apply one batch, or keep house; never raises."""
        with self._step_lock:
            if self._stop.is_set() or self.phase in ("failed", "stopped"):
                return
            try:
                self._step(time.monotonic())
            except Exception as e:
                self._fail(e)

    def _step(self, now: float) -> None:
        if self.phase != "running":
            if now >= self.due:
                self._start()
            return
        if self._resync_due is not None:
            self._refresh_gate()
            if not self._paused():  # paused: the resync waits for resume (the channel does not move)
                self._resync_while_running()
            return
        batch = self._take_batch()
        if not batch:
            if now >= self.due:
                self._housekeeping(now)
            return
        self._refresh_gate()
        try:
            self._handle(batch)
            self.backoff.reset()
        except RetriableError as e:
            self._wait_after(e)
            return
        self._idle_marked = now  # the batch's session says the database was current: no idle mark needed yet
        self._note_positions()

    # ----------------------------------------------------------------------------- lifecycle
    def _start(self) -> None:
        """Prepare (extension scripts) and open the database; on success want records again."""
        try:
            if self.phase == "prepare" and self._prepare is not None:
                self._prepare()
            self.phase = "opening"
            self._open()
        except Exception as e:
            if self._category(e) is not RetriableError:
                raise
            self._wait_after(e)
            return
        self.backoff.reset()
        if self._failed_batch is not None:
            self.sessions.record_alone(self.conn, self._failed_batch)
            self._failed_batch = None
        self.phase, self.status, self.last_error = "running", "running", None
        self._refresh_gate(force=True)
        self._rewind()
        if self._was_down:
            log.info("sink %s: database available again; resuming", self.name)
        else:
            log.info("sink %s: assigned %s from the offsets its database holds: %s", self.name, self.spec.topic,
                     self.state.offsets or "none (from the beginning)")
        self._was_down = False
        self.due = time.monotonic()

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

    def _rewind(self) -> None:
        """Want every partition again from the offsets the database holds (what was fetched is dropped)."""
        with self._mu:
            self._inbox.clear()
            self._next = dict(self.state.offsets)
            self.held.clear()
            self.positions.clear()
            self._accepting = True

    def _resync_while_running(self) -> None:
        reason, self._resync_due = self._resync_due or "", None
        try:
            self._resync(reason)
            self._rewind()
        except Exception as e:
            if self._category(e) is not RetriableError:
                raise
            self._wait_after(e)

    def _wait_after(self, error: BaseException) -> None:
        """Drop what was fetched and the connection; retry after a back-off step (standby: a fixed one)."""
        self._stop_wanting()
        self._close_db()
        if self.phase == "running":  # it ran: "available again" once it reopens (a first open says "assigned")
            self.phase, self._was_down = "opening", True
        self.status, self.last_error = "waiting", f"{type(error).__name__}: {error}"
        metrics.UP.labels(**self._labels).set(0)
        metrics.RETRIES.labels(**self._labels).inc()
        now = time.monotonic()
        if isinstance(error, ChannelLocked) and not self.settings.stand_by:
            raise FatalError(str(error).replace("standing by until it stops", "stop it first")) from error
        if isinstance(error, ChannelLocked):
            self.status, self.last_error = "standby", str(error)
            if now - self._standby_logged >= STANDBY_LOG_EVERY:
                self._standby_logged = now
                log.warning("%s (checking every %.0fs)", error, STANDBY_RETRY)
            self.due = now + STANDBY_RETRY
            return
        delay = self.backoff.next()
        log.warning("sink %s: %s; retrying in %.1fs", self.name, self.last_error, delay)
        self.due = now + delay

    def _stop_wanting(self) -> None:
        with self._mu:
            self._accepting = False
            self._inbox.clear()

    def _fail(self, e: BaseException) -> None:
        self.status, self.last_error = "failed", f"{type(e).__name__}: {e}"
        log.error("sink %s stopped: %s", self.name, self.last_error, exc_info=not isinstance(e, CdxError))
        self.phase = "failed"
        self._stop_wanting()
        self.sessions.record_alone(self.conn, Session(
            channel=self.name, group_topic=self.spec.topic, status=FAILED, started_at=utcnow(),
            error=f"sink stopped: {self.last_error}"))
        self._close_db()

    def close(self) -> None:
        """Stop for good (after ``stop()``; waits for a running step): release the lock, close the database."""
        self._stop.set()
        with self._step_lock:
            self._stop_wanting()
            self._close_db()
            if self.phase != "failed":
                self.phase, self.status = "stopped", "stopped"

    def _close_db(self) -> None:
        if self.conn is not None:
            try:
                self.lock.release(self.conn)
            except Exception as e:  # the connection is going anyway; a lease then expires on its own
                log.debug("sink %s: lock release: %s", self.name, e)
            quietly(self.conn.close, f"sink {self.name}: closing the channel connection", log)
            self.conn = None

    # ------------------------------------------------------------------------- housekeeping
    def _housekeeping(self, now: float) -> None:
        """Idle: re-read the controls, note positions, mark the database current, renew the lock."""
        self.due = now + self.settings.idle_tick
        self._refresh_gate()
        self._note_positions()
        self._mark_idle(now)
        self._keep_lock()

    def _note_positions(self) -> None:
        """With nothing in the inbox, everything before the positions wanted is handled."""
        with self._mu:
            if not self._inbox and self._accepting:
                self.positions.update((p, o) for p, o in self._next.items() if o >= 0 and p not in self.held)

    def _keep_lock(self) -> None:
        """Idle: renew a lease; a sink that lost the lock goes back to standing by."""
        try:
            if self.conn is not None:
                self.lock.renew(self.conn)
        except ChannelLocked as e:
            self._wait_after(e)
        except Exception as e:  # the next batch deals with a database that went away
            log.debug("sink %s: cannot renew the channel lock: %s", self.name, e)

    def _mark_idle(self, now: float) -> None:
        """Idle: record (throttled) when the database was last known current, in its own transaction."""
        if self.conn is None or now - self._idle_marked < self.settings.idle_mark_interval:
            return
        ends = self.ends_seen()  # as of the shared consumer's last fetch (no broker call)
        if not ends or any(high < 0 or self.positions.get(p, -1) < high for p, high in ends.items()):
            return
        self._idle_marked = now
        try:
            with self.dialect.transaction(self.conn):
                self.dialect.write_state(self.conn, self.store.namespace, {CAUGHT_UP_KEY: utcnow().isoformat()})
        except Exception as e:  # the next batch deals with a database that went away
            log.debug("sink %s: cannot record the idle mark: %s", self.name, e)
