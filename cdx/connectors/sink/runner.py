"""``ChannelSink``: one channel (or offline-register) database fed from its group topic.

Contract
- No thread and no Kafka consumer of its own: a host's shared consumer (``feed``) offers it the
  records of its group topic at the positions it wants, and a host's worker pool calls ``step()``
  (never two at once for one sink): open the database, apply a batch from the inbox, or keep house
  while idle. One database connection per sink, open while it runs.
- **A stage on the kernel** (:mod:`cdx.stage`, whose contract it keeps: resumable, idempotent,
  ordered): the sink is its own source (``share``: its share of the host's feed) and target
  (``target``: rows + offsets + watermarks in one transaction; re-sent changes, covered by the stored
  watermark, skipped; collapsed per key, parents first: ``apply``); each batch is written by
  :func:`cdx.stage.step.apply_once` (one attempt: a back-off never holds a worker of the pool).
- **Transient failures** (``RetriableError``: database or schema store unreachable, locks,
  deadlocks; any failure to *open* the database counts as one): the batch is dropped
  uncommitted, the sink stops wanting records (the others sharing its consumer go on) and retries
  the database with ``Backoff``; once it answers, it wants its partitions again from the offsets the
  database holds.
- **Poison records** and **download sessions**: see ``target`` (a refused record is isolated and
  dead-lettered unless ``breaker`` finds the failure systematic). **Fatal errors** stop this sink only
  (``status`` says ``failed``) and write a ``Failed`` session.
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
from collections.abc import Callable, Mapping
from typing import Any

from cdx.cleanup import quietly
from cdx.codec import Codec
from cdx.connectors.sink import metrics, respec
from cdx.connectors.sink.breaker import FailureBreaker
from cdx.connectors.sink.gate import Gate
from cdx.connectors.sink.lock import LEASE_SECONDS, ChannelLock, ChannelLocked
from cdx.connectors.sink.records import Decoder, Record
from cdx.connectors.sink.resync import CAUGHT_UP_KEY, ResyncReport, resync_reason
from cdx.connectors.sink.sessions import FAILED, Session, SessionLog
from cdx.connectors.sink.settings import DeadLetterSink, SinkSettings, Totals
from cdx.connectors.sink.share import FeedShare
from cdx.connectors.sink.spec import SinkSpec
from cdx.connectors.sink.state import SinkState, StateStore
from cdx.connectors.sink.tables import TableManager
from cdx.connectors.sink.target import ChannelTarget
from cdx.connectors.sink.tools import open_database
from cdx.dialects import get_dialect
from cdx.errors import CdxError, FatalError, RetriableError
from cdx.stage.backoff import Backoff
from cdx.stage.contract import Stage
from cdx.stage.sessions import utcnow
from cdx.stage.step import apply_once

__all__ = ["ChannelSink", "DeadLetterSink", "SinkSettings", "Totals"]

log = logging.getLogger("cdx.sink")

STANDBY_RETRY = 5.0
"""Seconds between a standing-by sink's attempts to take the channel lock."""
STANDBY_LOG_EVERY = 60.0


class ChannelSink(ChannelTarget, FeedShare):
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
        # a lease outlives three housekeeping steps, whatever the idle tick of a host with many channels
        self.lock = ChannelLock(self.dialect, spec.consumer_group, spec.owner_id,
                                lease=max(LEASE_SECONDS, 3 * s.idle_tick))
        self.dead_letters = dead_letters
        self.kafka_config = dict(kafka_config)
        self.state, self.totals = SinkState(), Totals()
        self.status = "starting"
        self.last_error: str | None = None
        self.conn: Any = None
        self._stop = stop or threading.Event()
        self._labels = {"channel": spec.owner_id}
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
        self.failed_batch: Session | None = None
        self._batch: list[Record] = []
        self._idle_marked = -float("inf")
        self._standby_logged = -float("inf")
        self._was_down = False
        self._step_lock = threading.Lock()
        self._scheduled = False
        self._init_share(max(2 * s.batch_size, 100))
        self.stage = Stage(f"sink:{spec.owner_id}", self, self, self.refused, on_failure=self.batch_failed)

    def stop(self) -> None:
        self._stop.set()

    def caught_up(self, ends: Mapping[int, int]) -> bool:
        """True once every partition is applied up to ``ends`` (e.g. end offsets observed earlier)."""
        return all(max(self.state.offsets.get(p, 0), self.positions.get(p, 0)) >= end
                   for p, end in ends.items() if end > 0)

    # ---------------------------------------------------------------------- the pool's side
    def claim(self) -> bool:
        """Whether the caller may queue this sink for a worker (it is not queued already)."""
        with self._mu:
            claimed, self._scheduled = not self._scheduled, True
            return claimed

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
        """One unit of work: open (or retry), apply one batch, or keep house; never raises. A transient
        failure (``RetriableError`` or classified so by the dialect) waits a back-off step, any other stops."""
        with self._step_lock:
            if self._stop.is_set() or self.phase in ("failed", "stopped"):
                return
            try:
                try:
                    self._step(time.monotonic())
                except Exception as e:
                    if self._category(e) is not RetriableError:
                        raise
                    self._wait_after(e)
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
                reason, self._resync_due = self._resync_due, None
                self._resync(reason)
                self.rewind()
            return
        if not self._ready():
            if now >= self.due:
                self._housekeeping(now)
            return
        self._refresh_gate()
        try:
            self._batch = self.poll(self.settings.batch_size)
            if self._batch:
                apply_once(self.stage, self._batch)
        finally:
            self._batch = []
        self.backoff.reset()
        self._idle_marked = now  # the batch's session says the database was current: no idle mark needed yet
        self.note_positions()

    # ----------------------------------------------------------------------------- lifecycle
    def _start(self) -> None:
        """Prepare (extension scripts) and open the database, then want records again."""
        if self.phase == "prepare" and self._prepare is not None:
            self._prepare()
        self.phase = "opening"
        self.open()
        self.backoff.reset()
        if self.failed_batch is not None:
            self.sessions.record_alone(self.conn, self.failed_batch)
            self.failed_batch = None
        self.phase, self.status, self.last_error = "running", "running", None
        self._refresh_gate(force=True)
        self.rewind()
        if self._was_down:
            log.info("sink %s: database available again; resuming", self.name)
        else:
            log.info("sink %s: assigned %s from the offsets its database holds: %s", self.name, self.spec.topic,
                     self.state.offsets or "none (from the beginning)")
        self._was_down = False
        self.due = time.monotonic()

    def open(self) -> None:
        """Open the database: take the channel lock, load the state, resync first when needed."""
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

    def _wait_after(self, error: BaseException) -> None:
        """Drop what was fetched and the connection; retry after a back-off step (standby: a fixed one)."""
        self.stop_wanting()
        self._close_db()
        if self.phase == "running":  # it ran: "available again" once it reopens (a first open says "assigned")
            self.phase, self._was_down = "opening", True
        self.status, self.last_error = "waiting", f"{type(error).__name__}: {error}"
        metrics.UP.labels(**self._labels).set(0)
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

    def _fail(self, e: BaseException) -> None:
        self.status, self.last_error = "failed", f"{type(e).__name__}: {e}"
        log.error("sink %s stopped: %s", self.name, self.last_error, exc_info=not isinstance(e, CdxError))
        self.phase = "failed"
        self.stop_wanting()
        self.sessions.record_alone(self.conn, Session(
            channel=self.name, group_topic=self.spec.topic, status=FAILED, started_at=utcnow(),
            error=f"sink stopped: {self.last_error}"))
        self._close_db()

    def close(self) -> None:
        """Stop for good (after ``stop()``; waits for a running step): release the lock, close the database."""
        self._stop.set()
        with self._step_lock:
            self.stop_wanting()
            self._close_db()
            if self.phase != "failed":
                self.phase, self.status = "stopped", "stopped"

    def _close_db(self) -> None:
        if self.conn is not None:  # a lock not released with the connection going: its lease expires on its own
            conn = self.conn
            quietly(lambda: self.lock.release(conn), f"sink {self.name}: releasing the channel lock", log)
            quietly(conn.close, f"sink {self.name}: closing the channel connection", log)
            self.conn = None

    # ------------------------------------------------------------------------- housekeeping
    def _housekeeping(self, now: float) -> None:
        """Idle: re-read the controls, note positions, mark the database current, renew the lock."""
        self.due = now + self.settings.idle_tick
        self._refresh_gate()
        self.note_positions()
        self._mark_idle(now)
        self._keep_lock()

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
