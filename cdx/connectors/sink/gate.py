"""Which consumed records a sink may apply now: ``cdx channel pause`` and distribution schedules.

Contract
- The controls live in the database the sink writes (``cdx.controls``); the gate reads them at most
  every ``REFRESH_EVERY`` seconds, between batches, in its own short transaction.
- **Paused**: nothing is applied. **Schedules**: a record of a subjob whose every delivering schedule
  is windowed or an interval (``SinkSpec.schedules``) is applied only while one of them is open,
  or when its offset is below that schedule's release (``cdx schedule run-now``; an interval's tick,
  which the sink itself records once per tick: the group topic's end offsets at that moment; a sink that
  was down at a tick releases when it starts; the first tick ever seen for a database only starts the count).
- **Order is kept**: a partition stops at its first held-back record; the records before it are
  applied, those from it on wait (also those of continuous subjobs behind it in that partition).
  Nothing is skipped: the sink's offsets stay at the held record, so lag counts on.
- The clock is the system clock, or, **for tests only**, the time written (ISO 8601 with a zone) in the
  file named by ``CDX_TEST_CLOCK_FILE`` (re-read at every refresh; real time when missing or empty).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from cdx import controls
from cdx.connectors.sink.records import Record
from cdx.connectors.sink.spec import SinkSpec
from cdx.dialects import Connection, Dialect
from cdx.topology.model import DistributionSchedule

log = logging.getLogger("cdx.sink")

CLOCK_ENV = "CDX_TEST_CLOCK_FILE"
"""Tests only: a file holding the time the sinks take for "now" (see module docstring)."""
REFRESH_EVERY = 1.0
"""Seconds between two reads of the controls (at most)."""


def clock_now() -> dt.datetime:
    """Now (aware): the system clock, or the test clock of ``CDX_TEST_CLOCK_FILE``."""
    path = os.environ.get(CLOCK_ENV)
    if path:
        try:
            text = Path(path).read_text().strip()
        except OSError:
            text = ""
        if text:
            value = dt.datetime.fromisoformat(text)
            return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    return dt.datetime.now(dt.UTC)


class Gate:
    """Cuts consumed batches at held-back records (see module docstring)."""

    def __init__(self, spec: SinkSpec, dialect: Dialect) -> None:
        self.spec = spec
        self.dialect = dialect
        self.controls = controls.Controls()
        self.open: dict[str, bool] = {}
        self._refreshed = -float("inf")
        self.schedules = {s.id.casefold(): s for group in spec.schedules.values() for s in group}

    @property
    def paused(self) -> bool:
        return self.controls.paused is not None

    def refresh(self, conn: Connection | None, ends: Callable[[], Mapping[int, int]] | None, *,
                force: bool = False) -> bool:
        """Re-read the controls and the windows (throttled); True when what is held may have changed.
        ``ends``: the group topic's end offsets now (an interval schedule's tick releases up to them)."""
        if conn is None or (not force and time.monotonic() - self._refreshed < REFRESH_EVERY):
            return False
        self._refreshed = time.monotonic()
        before = (self.controls, dict(self.open))
        try:  # a plain read: no write lock (SQLite's transaction() begins IMMEDIATE)
            self.controls = controls.read(conn, self.dialect, table_known=True)  # the sink ensured it on open
        finally:
            conn.rollback()
        now = clock_now()
        self.open = {k: s.plan.open_at(now, s.timezone) for k, s in self.schedules.items()}
        for key, sched in self.schedules.items():
            tick = sched.plan.tick(now, sched.timezone)
            if tick is None or tick == self.controls.ticks.get(key):
                continue
            if key not in self.controls.ticks:  # the first tick any sink sees here: the clock starts
                self._release(conn, sched, {}, tick)
            elif ends is not None:
                self._release_tick(conn, ends, sched, tick)
        changed = (self.controls, self.open) != before
        if changed:
            log.info("sink %s: %s; open schedules: %s", self.spec.owner_id,
                     "paused" if self.paused else "not paused",
                     ", ".join(s.id for k, s in self.schedules.items() if self.open.get(k)) or "none")
        return changed

    def _release_tick(self, conn: Connection, end_offsets: Callable[[], Mapping[int, int]],
                      sched: DistributionSchedule, tick: int) -> None:
        """An interval schedule ticked: release its records up to the topic's current end offsets."""
        try:
            ends = {p: high for p, high in end_offsets().items() if high >= 0}
        except Exception as e:  # Kafka unreachable: the next refresh tries again
            log.debug("sink %s: end offsets for %s: %s", self.spec.owner_id, sched.id, e)
            return
        if not ends:
            return
        self._release(conn, sched, ends, tick)
        log.info("sink %s: schedule %s ticked; applying its records up to %s", self.spec.owner_id, sched.id, ends)

    def _release(self, conn: Connection, sched: DistributionSchedule, ends: Mapping[int, int], tick: int) -> None:
        with self.dialect.transaction(conn):
            controls.raise_release(conn, self.dialect, sched.id, ends, tick=tick)
            self.controls = controls.read(conn, self.dialect)

    def holds(self, rec: Record) -> bool:
        """Whether ``rec`` must wait."""
        if self.paused:
            return True
        if rec.change is None:
            return False
        scheds = self.spec.schedules.get(rec.change.subjob.casefold())
        if not scheds:
            return False
        return not any(self.open.get(s.id.casefold()) or self.controls.released(s.id, rec.partition, rec.offset)
                       for s in scheds)

    def cut(self, records: list[Record]) -> tuple[list[Record], dict[int, int]]:
        """The records to apply now, and per partition the offset of its first held-back record."""
        if not self.paused and not self.spec.schedules:
            return records, {}
        held: dict[int, int] = {}
        out = []
        for rec in records:
            if rec.partition in held:
                continue
            if self.holds(rec):
                held[rec.partition] = rec.offset
            else:
                out.append(rec)
        return out, held
