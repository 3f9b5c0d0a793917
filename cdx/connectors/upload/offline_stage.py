"""One offline register's sync as a stage (:mod:`cdx.stage`): register database -> channel database.

- source :class:`RegisterRows`: the register's upload tables by replication counter, one snapshot per
  poll (a record: one table's ``TableWork``; the position: each table's ``UploadPosition`` by
  ``<register>/<table>``, read from the channel);
- target :class:`ChannelMerge`: one channel-database transaction per poll with the rows merged by POS
  transaction (:mod:`cdx.connectors.upload.offline_merge`), the positions (``cdx_state``, namespace
  ``cdx-offline-sync``) and the conflicts' dead letters (flushed before the commit).

Phases of a poll: **prepare** (connect, plans, positions), **read**, **merge**, **account** (after the
commit). Any database trouble is a ``RetriableError`` (a missing column too: it may be added meanwhile);
after a failure both sides reconnect and the positions are read again (a failed commit may have committed).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import Producer

from cdx.cleanup import quietly
from cdx.connectors.upload import metrics
from cdx.connectors.upload.offline_merge import (
    MergeOutcome,
    TableWork,
    conflict_letters,
    group_transactions,
    merge_transactions,
    transaction_key,
)
from cdx.connectors.upload.offline_plan import OfflinePlan
from cdx.connectors.upload.positions import UploadPosition, resume
from cdx.connectors.upload.records import dlq_record
from cdx.connectors.upload.source import close_quietly, db_error, open_database, read_snapshot
from cdx.dialects import Connection, Dialect, get_dialect
from cdx.errors import RetriableError, SkippableError
from cdx.kafka.control import deliver
from cdx.topology import Subjob
from cdx.topology.model import Channel, OfflineRegister

log = logging.getLogger("cdx.upload.offline")

NAMESPACE = "cdx-offline-sync"
COMPONENT = "offline-sync"

Positions = dict[str, UploadPosition]
"""A register's position: each table's ``UploadPosition`` by ``<register>/<table>``."""


def retriable(dialect: Dialect, exc: BaseException, what: str) -> RetriableError:
    """A database exception as the ``RetriableError`` the loop retries (see the module docstring)."""
    err = db_error(dialect, exc, what)
    return err if isinstance(err, RetriableError) else RetriableError(str(err))


class ChannelMerge:
    """The target (see the module docstring). ``plans`` gives the source's plans (every table's sides)."""

    def __init__(self, channel: Channel, register_id: str, dlq: Producer | None, dlq_topic: str,
                 plans: Callable[[], list[OfflinePlan]]) -> None:
        self.channel, self.register_id, self.dlq, self.dlq_topic, self.plans = (channel, register_id, dlq,
                                                                                 dlq_topic, plans)
        self.dialect = get_dialect(channel.database.dialect.value)
        self.conn: Connection | None = None
        self._tx: contextlib.ExitStack | None = None
        self._merged: tuple[list[TableWork], MergeOutcome] | None = None

    def open(self) -> None:
        self.close()
        conn = open_database(self.channel.database)
        try:
            with self.dialect.transaction(conn):
                self.dialect.ensure_state_table(conn)
        except Exception as exc:
            close_quietly(conn)
            raise retriable(self.dialect, exc, f"channel {self.channel.id} database") from exc
        self.conn = conn

    def connection(self) -> Connection:
        if self.conn is None:
            self.open()
        assert self.conn is not None
        return self.conn

    def stored(self, keys: Sequence[tuple[str, str]]) -> Positions:
        """The positions the channel holds for ``(key, counter column)`` (the beginning where none)."""
        conn = self.connection()
        state = self.dialect.read_state(conn, NAMESPACE)
        conn.rollback()
        return {key: resume(UploadPosition.decode(state[key]) if key in state else None, counter)
                for key, counter in keys}

    def begin(self) -> None:
        conn = self.connection()
        tx = contextlib.ExitStack()
        try:
            tx.enter_context(self.dialect.transaction(conn))
        except Exception as exc:
            self.close()
            raise retriable(self.dialect, exc, f"channel {self.channel.id} database") from exc
        self._tx = tx

    def write(self, items: Sequence[TableWork], position: Positions) -> None:
        """The merge phase: the rows by POS transaction, the positions, the conflicts' dead letters."""
        d, conn = self.dialect, self.connection()
        sides = [x for plan in self.plans() for x in (plan.ext, plan.primary) if x is not None]
        txn_cols = transaction_key(sides)
        try:
            outcome = merge_transactions(d, conn, sides, group_transactions(items, txn_cols), txn_cols,
                                         self.channel.id)
            d.write_state(conn, NAMESPACE, {k: p.encode().decode() for k, p in position.items()})
        except Exception as exc:
            raise retriable(d, exc, f"channel {self.channel.id} database") from exc
        if outcome.conflicts:
            self._letters(conflict_letters(outcome.conflicts, self.register_id, self.channel.id))
        self._merged = (list(items), outcome)

    def _letters(self, records: list[tuple[bytes, bytes, list[tuple[str, bytes]]]]) -> None:
        if self.dlq is None:
            raise RetriableError("no dead-letter producer for offline-sync dead letters")
        deliver(self.dlq, self.dlq_topic, records, 30.0, "dead letters")
        metrics.DEAD_LETTERS.labels(COMPONENT).inc(len(records))

    def refuse(self, record: TableWork, exc: SkippableError) -> None:
        """A table's work the loop isolated as unusable: one dead letter per row, at once."""
        self._letters([dlq_record("offline", exc.reason, channel=self.channel.id, table=str(record.plan.table),
                                  counter=r.counter, row={"_register": self.register_id}) for r in record.rows])

    def commit(self) -> None:
        assert self._tx is not None
        tx, self._tx = self._tx, None
        try:
            tx.close()
        except Exception as exc:
            self.close()
            raise retriable(self.dialect, exc, f"channel {self.channel.id} database") from exc
        if self._merged is not None:
            self._account(*self._merged)
        self._merged = None

    def _account(self, work: list[TableWork], outcome: MergeOutcome) -> None:
        """The account phase: metrics and log lines of a committed merge."""
        reg = self.register_id
        for w in work:
            for gap in w.closed:
                log.warning("register %s, %s: counters %d..%d never appeared; skipped", reg, w.plan.table,
                            gap.start, gap.end)
        for result, n in outcome.counts().items():
            if n:
                metrics.OFFLINE_ROWS.labels(reg, result).inc(n)
        for c in outcome.conflicts:
            log.error("register %s, transaction %s (%d rows): %s; sent to the dead-letter topic", reg, c.key,
                      len(c.members), c.reason)
        if outcome.inserted or outcome.duplicate:
            log.info("register %s: %d rows copied to channel %s (%d duplicates, %d in conflict)", reg,
                     outcome.inserted, self.channel.id, outcome.duplicate, outcome.conflict)

    def abort(self, error: BaseException | None = None) -> None:
        tx, self._tx, self._merged = self._tx, None, None
        if tx is not None:
            quietly(lambda: tx.__exit__(RetriableError, RetriableError("rolled back"), None),
                    "offline sync: rolling back", log)
        if isinstance(error, RetriableError):
            self.close()  # reconnect before the next batch

    def close(self) -> None:
        close_quietly(self.conn)
        self.conn = None


class RegisterRows:
    """The source (see the module docstring)."""

    def __init__(self, register: OfflineRegister, subjobs: list[Subjob], target: ChannelMerge, options: Any,
                 stop: threading.Event) -> None:
        self.register, self.id, self.subjobs, self.target = register, register.id, subjobs, target
        self.options, self.stop = options, stop
        self.dialect = get_dialect(register.database.dialect.value)
        self.conn: Connection | None = None
        self.plans: list[OfflinePlan] = []
        self.positions: Positions = {}

    def open(self) -> None:
        self._errors(self._prepare, "set-up")

    def _prepare(self) -> None:
        """The prepare phase: connect the register; build its plans; read its positions from the channel."""
        if self.conn is None:
            self.conn = open_database(self.register.database, read_snapshots=True)
        if self.plans:
            return
        ch = self.target.connection()
        plans = [OfflinePlan(s, self.dialect, self.conn, self.target.dialect, ch) for s in self.subjobs]
        self.positions = self.target.stored([(f"{self.id}/{p.table}", p.counter) for p in plans])
        self.plans = plans

    def poll(self, max_records: int, max_wait: float) -> Sequence[TableWork]:
        work = self._errors(self._prepare_and_read, "database")
        if not work:
            self.stop.wait(max_wait)
        return work

    def _prepare_and_read(self) -> list[TableWork]:
        self._prepare()
        return self._read()

    def _read(self) -> list[TableWork]:
        """The read phase: every plan's new rows and advanced position, in one snapshot of the register."""
        assert self.conn is not None
        o, now, work = self.options, int(time.time() * 1000), []
        with read_snapshot(self.dialect, self.conn) as snap:
            for plan in self.plans:
                key = f"{self.id}/{plan.table}"
                pos = self.positions[key].copy()
                rows = plan.read(self.conn, pos)
                adv = pos.advance([r.counter for r in rows], now_ms=now, horizon_token=snap.token,
                                  horizon_passed=snap.passed, grace_ms=int(o.gap_grace * 1000),
                                  timeout_ms=int(o.gap_timeout * 1000))
                if adv.changed:
                    wanted = set(adv.publish)
                    work.append(TableWork(plan, key, pos, [r for r in rows if r.counter in wanted], adv.closed))
        return work

    def _errors(self, step: Callable[[], Any], what: str) -> Any:
        try:
            return step()
        except Exception as exc:
            self.close()
            self.target.close()  # either side may be down: both reconnect
            raise retriable(self.dialect, exc, f"register {self.id} {what}") from exc

    def position(self, records: Sequence[TableWork]) -> Positions:
        return {w.key: w.position for w in records}

    def committed(self, position: Positions) -> None:
        self.positions.update(position)

    def rewind(self) -> None:
        self.plans = []  # prepared again: plans and the positions the channel holds

    def close(self) -> None:
        close_quietly(self.conn)
        self.conn = None
        self.plans = []
