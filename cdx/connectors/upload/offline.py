"""Offline registers -> their channel database, exactly once (``cdx channel offline-sync``).

A POS register that cannot reach its channel database writes its sales to its own offline
database. This process copies them into the channel database when it can; from there the
channel upload takes them to HQ like any other row.

Contract
- Per register and upload subjob, the offline database's upload table is read by replication
  counter with the same gap-tracking position as the channel upload
  (:mod:`cdx.connectors.upload.positions`), in one snapshot; a joined extension row (``override_target:
  false``) is read with its primary row and copied with it, in the same channel transaction.
- Rows are merged into the channel database by **business key** (the channel table's primary
  key, e.g. DATAAREAID, CHANNEL, STORE, TERMINAL, TRANSACTIONID [, LINENUM]), every column the two
  tables share except the replication counter, which the channel database assigns itself
  (identity; or ``MAX + 1`` under SQLite's write lock when the column is a plain one). A key
  already present with the same content is a duplicate (skipped); with **different content** it
  is a conflict: never overwritten, logged and sent to the dead-letter topic.
- The register's position is stored in the **channel** database's ``cdx_state`` (namespace
  ``cdx-offline-sync``, key ``<register>/<table>``) in the same transaction as the rows, so a crash
  never copies a row twice nor skips one.
- An unreachable channel database is retried with backoff (its registers wait; other channels
  go on); an unreachable register database delays that register only.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from confluent_kafka import Producer

from cdx.connectors.upload import metrics
from cdx.connectors.upload.offline_merge import (
    Conflict,
    MergeOutcome,
    TableWork,
    conflict_letters,
    group_transactions,
    merge_transactions,
    transaction_key,
)
from cdx.connectors.upload.offline_plan import OfflinePlan, counter_generated
from cdx.connectors.upload.plan import offline_subjobs_for
from cdx.connectors.upload.positions import UploadPosition, resume
from cdx.connectors.upload.records import produce_and_flush
from cdx.connectors.upload.reload import reload_offline_sync
from cdx.connectors.upload.source import ReadSnapshot, close_quietly, db_error, open_database
from cdx.dialects import Connection, Dialect, get_dialect
from cdx.errors import CdxError, ConfigError, FatalError, RetriableError
from cdx.kafka.admin import TopicSpec, ensure_topics
from cdx.kafka.config import client_config, producer_config
from cdx.stage.backoff import Backoff
from cdx.topics import dlq_topic
from cdx.topology import Topology
from cdx.topology.live import LiveTopology
from cdx.topology.model import Channel, OfflineRegister

log = logging.getLogger("cdx.upload.offline")

__all__ = ["ChannelOfflineSync", "OfflineSync", "RegisterSync", "SyncOptions", "counter_generated", "syncing_channels",
           "transaction_key"]

NAMESPACE = "cdx-offline-sync"
COMPONENT = "offline-sync"


@dataclass
class SyncOptions:
    poll_interval: float = 1.0
    batch_size: int = 5000
    gap_grace: float = 5.0
    gap_timeout: float = 600.0
    max_backoff: float = 30.0


class RegisterSync:
    """One register's state: its database connection, positions, plans and back-off."""

    def __init__(self, register: OfflineRegister, max_backoff: float = 30.0) -> None:
        self.register = register
        self.id = register.id
        self.dialect = get_dialect(register.database.dialect.value)
        self.conn: Connection | None = None
        self.plans: list[OfflinePlan] = []
        self.positions: dict[str, UploadPosition] = {}
        self.retry_at = 0.0
        self.backoff = Backoff(initial=min(0.5, max_backoff), maximum=max_backoff)

    def close(self) -> None:
        close_quietly(self.conn)
        self.conn = None
        self.plans = []


class ChannelOfflineSync:
    """Syncs every offline register of one channel into its channel database (a thread)."""

    def __init__(self, topology: Topology, channel: Channel, registers: Sequence[OfflineRegister],
                 options: SyncOptions, stop: threading.Event, dlq: Producer | None, dlq_name: str) -> None:
        self.topology = topology
        self.channel = channel
        self.options = options
        self._stop = stop
        self.subjobs = offline_subjobs_for(topology, channel.id)
        self.registers = [RegisterSync(r, options.max_backoff) for r in registers]
        self.dialect = get_dialect(channel.database.dialect.value)
        self.conn: Connection | None = None
        self.dlq = dlq
        self.dlq_topic = dlq_name
        self.error: BaseException | None = None

    def run(self) -> None:
        backoff = Backoff(initial=min(0.5, self.options.max_backoff), maximum=self.options.max_backoff)
        try:
            while not self._stop.is_set():
                try:
                    if self.conn is None:
                        self.conn = open_database(self.channel.database)
                        with self.dialect.transaction(self.conn):
                            self.dialect.ensure_state_table(self.conn)
                    moved = self.sync_once()
                    backoff.reset()
                except FatalError as exc:
                    if not isinstance(exc, ConfigError):
                        raise
                    self._channel_down(exc, backoff, error=True)
                    continue
                except RetriableError as exc:
                    self._channel_down(exc, backoff, error=False)
                    continue
                if not moved:
                    self._stop.wait(self.options.poll_interval)
        except BaseException as exc:
            self.error = exc
            log.error("channel %s: offline sync stopped: %s", self.channel.id, exc)
            raise
        finally:
            close_quietly(self.conn)
            for r in self.registers:
                r.close()

    def _channel_down(self, exc: BaseException, backoff: Backoff, *, error: bool) -> None:
        (log.error if error else log.warning)("channel %s database: %s; retrying in %.1fs", self.channel.id, exc,
                                              backoff.peek())
        close_quietly(self.conn)
        self.conn = None
        for r in self.registers:
            r.plans = []
        backoff.wait(self._stop)

    def sync_once(self) -> int:
        """One pass over the channel's registers; returns rows copied (+ conflicts)."""
        total = 0
        for reg in self.registers:
            if self._stop.is_set():
                break
            if time.monotonic() < reg.retry_at:
                continue
            try:
                total += self._sync_register(reg)
                reg.backoff.reset()
            except _ChannelTrouble as exc:
                reg.close()
                raise exc.typed from exc
            except (RetriableError, ConfigError) as exc:
                metrics.OFFLINE_ERRORS.labels(reg.id).inc()
                log.warning("register %s: %s; retrying in %.1fs", reg.id, exc, reg.backoff.peek())
                reg.close()
                reg.retry_at = time.monotonic() + reg.backoff.next()
        return total

    # ----------------------------------------------------------------- one register, in named phases
    def _sync_register(self, reg: RegisterSync) -> int:
        """Copy what is new in one register: set up its plans and positions, read it in one snapshot,
        merge into the channel database with the positions in one transaction, then account for it.
        Returns rows handled (inserted, duplicate, in conflict) plus gaps skipped."""
        self._prepare(reg)
        work = self._read_register(reg)
        if not work:
            return 0
        outcome = self._merge(reg, work)
        self._committed(reg, work, outcome)
        return sum(outcome.counts().values()) + sum(len(w.closed) for w in work)

    def _prepare(self, reg: RegisterSync) -> None:
        """Connect the register; on the first pass (or after trouble) build its plans and read its
        positions from the channel's ``cdx_state``. Either side may be down: then both reconnect."""
        assert self.conn is not None
        ch_d, ch = self.dialect, self.conn
        if reg.conn is None:
            reg.conn = open_database(reg.register.database, read_snapshots=True)
        if reg.plans:
            return
        try:
            reg.plans = [OfflinePlan(s, reg.dialect, reg.conn, ch_d, ch) for s in self.subjobs]
            state = ch_d.read_state(ch, NAMESPACE)
            ch.rollback()
        except BaseException as exc:
            reg.plans = []
            typed = _typed(reg.dialect, exc, f"register {reg.id} set-up")
            if isinstance(typed, RetriableError):
                raise _ChannelTrouble(typed) from exc  # either side may be down: reconnect both
            raise typed from exc
        reg.positions = {}
        for plan in reg.plans:
            key = f"{reg.id}/{plan.table}"
            stored = UploadPosition.decode(state[key]) if key in state else None
            reg.positions[key] = resume(stored, plan.counter)

    def _read_register(self, reg: RegisterSync) -> list[TableWork]:
        """Every plan's new rows and advanced position, in one snapshot of the register database."""
        assert reg.conn is not None
        opts = self.options
        now = int(time.time() * 1000)
        work = []
        try:
            with ReadSnapshot(reg.dialect, reg.conn).open() as snap:
                for plan in reg.plans:
                    key = f"{reg.id}/{plan.table}"
                    pos = reg.positions[key].copy()
                    rows = plan.read(reg.conn, pos)
                    adv = pos.advance([r.counter for r in rows], now_ms=now, horizon_token=snap.token,
                                      horizon_passed=snap.passed, grace_ms=int(opts.gap_grace * 1000),
                                      timeout_ms=int(opts.gap_timeout * 1000))
                    if adv.changed:
                        wanted = set(adv.publish)
                        work.append(TableWork(plan, key, pos, [r for r in rows if r.counter in wanted], adv.closed))
        except BaseException as exc:
            raise _typed(reg.dialect, exc, f"register {reg.id} database") from exc
        return work

    def _merge(self, reg: RegisterSync, work: list[TableWork]) -> MergeOutcome:
        """One channel transaction: the rows by POS transaction (``offline_merge``), the positions and
        the conflicts' dead letters. Channel database trouble is ``_ChannelTrouble``."""
        assert self.conn is not None
        ch_d, ch = self.dialect, self.conn
        sides = [x for plan in reg.plans for x in (plan.ext, plan.primary) if x is not None]
        txn_cols = transaction_key(sides)
        txns = group_transactions(work, txn_cols)
        try:
            with ch_d.transaction(ch):
                outcome = merge_transactions(ch_d, ch, sides, txns, txn_cols, self.channel.id)
                for w in work:
                    ch_d.write_state(ch, NAMESPACE, {w.key: w.position.encode().decode()})
                self._dead_letters(reg.id, outcome.conflicts)
        except CdxError as exc:
            if isinstance(exc, RetriableError):
                raise _ChannelTrouble(exc) from exc
            raise
        except BaseException as exc:
            raise _ChannelTrouble(_typed(ch_d, exc, f"channel {self.channel.id} database")) from exc
        return outcome

    def _committed(self, reg: RegisterSync, work: list[TableWork], outcome: MergeOutcome) -> None:
        """After the commit: the register takes its new positions; metrics and log lines."""
        for w in work:
            reg.positions[w.key] = w.position
            for gap in w.closed:
                log.warning("register %s, %s: counters %d..%d never appeared; skipped", reg.id, w.plan.table,
                            gap.start, gap.end)
        for result, n in outcome.counts().items():
            if n:
                metrics.OFFLINE_ROWS.labels(reg.id, result).inc(n)
        for c in outcome.conflicts:
            log.error("register %s, transaction %s (%d rows): %s; sent to the dead-letter topic", reg.id, c.key,
                      len(c.members), c.reason)
        if outcome.inserted or outcome.duplicate:
            log.info("register %s: %d rows copied to channel %s (%d duplicates, %d in conflict)", reg.id,
                     outcome.inserted, self.channel.id, outcome.duplicate, outcome.conflict)

    def _dead_letters(self, register: str, conflicts: list[Conflict]) -> None:
        """One dead letter per conflicting transaction, with all its register rows."""
        if not conflicts:
            return
        if self.dlq is None:
            raise RetriableError("no dead-letter producer for offline-sync conflicts")
        records = conflict_letters(conflicts, register, self.channel.id)
        produce_and_flush(self.dlq, self.dlq_topic, records)
        metrics.DEAD_LETTERS.labels(COMPONENT).inc(len(records))


class _ChannelTrouble(Exception):
    def __init__(self, typed: CdxError) -> None:
        super().__init__(str(typed))
        self.typed = typed


def _typed(dialect: Dialect, exc: BaseException, what: str) -> CdxError:
    err = db_error(dialect, exc, what)
    if isinstance(err, RetriableError | ConfigError):
        return err
    return RetriableError(str(err))


def syncing_channels(topology: Topology, channels: list[str] | None = None) -> list[Channel]:
    """Channels with offline registers and upload subjobs (all, or those named); ``ConfigError`` for others."""
    wanted = {c.casefold() for c in channels or []}
    out = [c.channel for c in topology.channels()
           if c.channel.offline_registers and offline_subjobs_for(topology, c.channel.id)
           and (not wanted or c.channel.id.casefold() in wanted)]
    unknown = wanted - {c.id.casefold() for c in out}
    if unknown:
        raise ConfigError(f"channels {sorted(unknown)} are unknown or have no offline registers to sync")
    return out


class OfflineSync:
    """Runs one :class:`ChannelOfflineSync` thread per channel that has offline registers."""

    def __init__(self, topology: Topology, channels: list[str] | None = None,
                 options: SyncOptions | None = None) -> None:
        self.topology = topology
        self.options = options or SyncOptions()
        self._stop = threading.Event()
        self.requested = channels
        self.channels = syncing_channels(topology, channels)
        self.live: LiveTopology | None = None
        """Set by ``cdx channel offline-sync``: ``run`` takes new revisions (``reload``)."""
        self.threads: dict[str, threading.Thread] = {}
        k = topology.kafka
        self.base_config = client_config(k.bootstrap_servers, k.security)
        self.dlq_topic = dlq_topic(k.topic_prefix)
        self.dlq: Producer | None = None
        self.workers: list[ChannelOfflineSync] = []

    def setup(self) -> None:
        ensure_topics(self.base_config, [TopicSpec(self.dlq_topic, 1, self.topology.kafka.replication_factor)])
        self.dlq = Producer(producer_config(self.base_config))
        self.workers = [self.worker(self.topology, c) for c in self.channels]

    def worker(self, topology: Topology, channel: Channel) -> ChannelOfflineSync:
        return ChannelOfflineSync(topology, channel, channel.offline_registers, self.options, threading.Event(),
                                  self.dlq, self.dlq_topic)

    def stop(self) -> None:
        self._stop.set()
        for w in self.workers:
            w._stop.set()

    def start(self, worker: ChannelOfflineSync) -> None:
        if self._stop.is_set():
            worker._stop.set()
        t = threading.Thread(target=self._guard, args=(worker,), name=f"offline-{worker.channel.id}", daemon=True)
        self.threads[worker.channel.id] = t
        t.start()

    def reload(self, topology: Topology) -> None:
        """Take a new topology revision (``cdx.connectors.upload.reload.reload_offline_sync``)."""
        reload_offline_sync(self, topology, syncing_channels)

    def run(self) -> None:
        if not self.workers:
            self.setup()
        for w in self.workers:
            self.start(w)
        while any(t.is_alive() for t in self.threads.values()) or (self.live is not None
                                                                     and not self._stop.is_set()):
            if self.live is not None and not self._stop.is_set():
                self.live.offer(self.reload)
            for t in list(self.threads.values()):
                t.join(0.2)
            if not self.threads:
                self._stop.wait(0.5)
            if any(w.error is not None for w in self.workers):
                self.stop()
        if self.dlq is not None:
            self.dlq.flush(10)
        failed = [w for w in self.workers if w.error is not None]
        if failed:
            err = failed[0].error
            raise err if isinstance(err, FatalError) else FatalError(f"offline sync stopped: {err}")

    @staticmethod
    def _guard(worker: ChannelOfflineSync) -> None:
        try:
            worker.run()
        except BaseException as exc:  # the worker recorded it in worker.error; run() stops the others
            log.debug("offline sync worker ended: %r", exc)
