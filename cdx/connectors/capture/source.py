"""The capture stage's source: HQ change tracking, read per table after the table's committed position.

A :class:`cdx.stage.contract.Source` whose records are :class:`~cdx.connectors.capture.tables.Unit`s:
one table's changes (at most ``batch_size``) or snapshot chunk, with the table's position after them;
a ``poll`` hands on the units of one pass (up to ``max_records`` units and about ``batch_size`` changes:
one Kafka transaction for every table a pass found changes in), walking the tables in passes:

- A pass takes the re-snapshot requests (``cdx capture resnapshot``, every ``REQUEST_INTERVAL`` s), then
  asks HQ for its tracking version (PostgreSQL: the one stamping of the pass). After a pass that published
  nothing, no table is read while every one was read up to that version, and ``poll`` waits ``max_wait``.
  Passes start ``max_wait`` apart (the poll interval) unless one found a backlog (a table with
  ``batch_size`` changes or a snapshot chunk): at a steady trickle HQ is asked about every table once per
  interval, not back to back, and each transaction carries the interval's changes.
- A table without a position is snapshotted from the version taken before its first chunk, one chunk per
  table per pass; an expired position (``ResyncRequired``) or a request re-snapshots it, the last chunk
  deleting keys gone from HQ (:mod:`cdx.connectors.capture.snapshot`). A quiet table's position is
  written again after ``idle_position_interval`` (it must not fall behind the tracking retention).
- Positions move in memory only in ``committed``. After ``rewind`` (a failed batch, a lost producer) the
  next poll reconnects to HQ and re-reads every position from the positions topic (read_committed).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from cdx.cleanup import quietly
from cdx.codec import SchemaStore
from cdx.codec.codec import Codec
from cdx.codec.envelope import Op
from cdx.connectors.capture import metrics, requests
from cdx.connectors.capture.positions import Position, SnapshotProgress, load_positions
from cdx.connectors.capture.records import to_codec_columns
from cdx.connectors.capture.snapshot import stale_keys
from cdx.connectors.capture.tables import TableState, Unit
from cdx.connectors.capture.tracking import ChangeTracker, ResyncRequired
from cdx.dialects import get_dialect
from cdx.errors import ConfigError, FatalError, RetriableError

log = logging.getLogger("cdx.capture")

OPS = {"I": Op.CREATE, "U": Op.UPDATE, "D": Op.DELETE}
REQUEST_INTERVAL = 2.0
"""Seconds between two reads of the operator's requests in HQ (``cdx.connectors.capture.requests``)."""


def now_ms() -> int:
    return int(time.time() * 1000)


class TrackingSource:
    """See the module docstring. ``codec`` and ``store`` are set by the connector before ``open``."""

    def __init__(self, tables: list[TableState], tracker_factory: Callable[[], ChangeTracker], dialect: str,
                 base_config: Mapping[str, Any], positions_topic: str, hq_name: str, stop: threading.Event, *,
                 batch_size: int, snapshot_chunk_rows: int, idle_position_interval: float) -> None:
        self.tables, self.tracker_factory, self.dialect = tables, tracker_factory, dialect
        self.base_config, self.positions_topic, self.hq_name = dict(base_config), positions_topic, hq_name
        self.stop = stop
        self.batch_size, self.snapshot_chunk_rows = batch_size, snapshot_chunk_rows
        self.idle_position_interval = idle_position_interval
        self.tracker: ChangeTracker | None = None
        self.codec: Codec | None = None
        self.store: SchemaStore | None = None
        self._todo: list[TableState] | None = None
        self._published = 0
        self._idle = self._backlog = False
        self._pass_started = 0.0
        self._stale = True
        self._pending: list[Unit] = []
        self._requests_due = 0.0
        self._handled: dict[str, str] = {}

    # ------------------------------------------------------------------ the Source contract
    def open(self) -> None:
        """Connect to HQ, take every table's schemas and committed position (idempotent)."""
        if self._stale:
            self.close()
            self.tracker = self.db(self.tracker_factory)
            for table in self.tables:
                self.refresh_schema(table)
            self._load_positions()

    def poll(self, max_records: int, max_wait: float) -> Sequence[Unit]:
        self.open()
        if self._todo is None:
            self._todo, self._published, self._backlog = self._plan(), 0, False
            self._pass_started = time.monotonic()
        units: list[Unit] = []
        events = 0
        while self._todo and not self.stop.is_set() and len(units) < max_records and events < self.batch_size:
            unit = self._read(self._todo.pop(0))
            if unit is not None:
                self._published += len(unit.events)
                self._backlog = self._backlog or unit.snapshot is not None or len(unit.events) >= self.batch_size
                self._pending.append(unit)
                units.append(unit)
                events += len(unit.events)
        if units:
            return units
        self._todo, self._idle = None, self._published == 0  # the pass is over: the next poll starts another
        if self._idle:
            self.stop.wait(max_wait)
        elif not self._backlog:  # paced: passes start max_wait apart unless a table or a snapshot has more
            self.stop.wait(max(0.0, self._pass_started + max_wait - time.monotonic()))
        return []

    def one_pass(self) -> Iterator[Unit]:
        """The units of one pass over every table (``CaptureConnector.poll_once``)."""
        self._todo = None
        while units := self.poll(1, 0.0):
            yield from units

    def position(self, records: Sequence[Unit]) -> dict[str, Position]:
        return {u.table.name: u.position for u in records}

    def committed(self, position: dict[str, Position]) -> None:
        done = [u for u in self._pending if u.table.name in position]
        self._pending = [u for u in self._pending if u.table.name not in position]
        for unit in done:
            self._took(unit)

    def rewind(self) -> None:
        self._pending, self._todo, self._stale = [], None, True

    def close(self) -> None:
        if self.tracker is not None:
            quietly(self.tracker.conn.close, "capture: closing the HQ connection", log)
            self.tracker = None
        self._stale = True

    # ------------------------------------------------------------------ positions and schemas
    def _load_positions(self) -> None:
        """Every table's committed position (read_committed): after a failure, what is committed counts."""
        try:
            positions = load_positions(self.base_config, self.positions_topic, self.hq_name)
        except TimeoutError as exc:
            raise RetriableError(f"capture positions not readable: {exc}") from exc
        for table in self.tables:
            table.position, table.checked = positions.get(table.name), -1
            if table.position is not None:
                metrics.VERSION.labels(table.name).set(table.position.version)
        self._idle, self._stale = False, False

    def refresh_schema(self, table: TableState) -> None:
        """Introspect ``table`` at HQ and register its schemas (published by the stage's decode)."""
        tracker, store = self.tracker, self.store
        assert tracker is not None and store is not None

        def refresh() -> None:
            columns = tracker.dialect.introspect_columns(tracker.conn, table.ref.schema, table.ref.name)
            tracker.conn.rollback()
            cols = to_codec_columns(columns)
            table.schemas = store.register_table(table.topic, cols)
            table.fields = frozenset(c.name for c in cols)

        self.db(refresh)

    def db(self, fn: Callable[[], Any]) -> Any:
        """Run a tracker call; database errors become typed cdx errors."""
        try:
            return fn()
        except (ResyncRequired, ConfigError, FatalError, RetriableError):
            raise
        except Exception as exc:
            if get_dialect(self.dialect).classify_error(exc) is RetriableError:
                raise RetriableError(f"HQ database error: {exc}") from exc
            raise FatalError(f"HQ database error while capturing: {exc}") from exc

    def _took(self, unit: Unit) -> None:
        """``unit`` is committed: its table's position moves on."""
        table, pos = unit.table, unit.position
        table.position, table.position_written_at = pos, time.monotonic()
        table.checked = pos.version if unit.snapshot is None else -1
        for op in {e[0] for e in unit.events}:
            metrics.CHANGES.labels(table.name, op.value).inc(sum(1 for e in unit.events if e[0] is op))
        if unit.snapshot is None or unit.done:
            metrics.VERSION.labels(table.name).set(pos.version)
        if unit.done and unit.snapshot is not None:
            log.info("snapshot of %s: %d rows at version %d", table.name,
                     unit.snapshot.rows + sum(1 for e in unit.events if e[0] is Op.READ), pos.version)
        if unit.request is not None:
            self._handled[table.name], table.requested = unit.request, None
            tracker = self.tracker
            try:
                assert tracker is not None
                requests.done(tracker.conn, tracker.dialect, table.name, unit.request)
            except Exception as exc:  # a read-only HQ user: remembered in _handled instead
                log.warning("cannot clear the re-snapshot request of %s in HQ: %s", table.name, exc)

    # ------------------------------------------------------------------ one pass
    def _plan(self) -> list[TableState]:
        """The tables to read in this pass (none when HQ has nothing new)."""
        assert self.tracker is not None
        requested = self._take_requests()
        current = int(self.db(self.tracker.current_version))
        if not requested and self._idle and self._nothing_new(current):
            return []
        return list(self.tables)

    def _take_requests(self) -> bool:
        """Mark the tables ``cdx capture resnapshot`` asked for (at most every ``REQUEST_INTERVAL`` s)."""
        tracker = self.tracker
        if tracker is None or time.monotonic() < self._requests_due:
            return False
        self._requests_due = time.monotonic() + REQUEST_INTERVAL
        found: dict[str, str] = self.db(lambda: requests.pending(tracker.conn, tracker.dialect))
        for table in self.tables:
            value = found.get(table.name.casefold())
            if value is not None and self._handled.get(table.name) != value and table.requested != value:
                log.warning("re-snapshotting %s on request (%s)", table.name, value)
                metrics.RESNAPSHOTS.labels(table.name).inc()
                table.requested = value
        return any(t.requested is not None for t in self.tables)

    def _nothing_new(self, current: int) -> bool:
        """True when every table streams, was read up to HQ's current tracking version and has no idle
        position to write (a quiet table's position must not fall behind the tracking retention)."""
        now = time.monotonic()
        for t in self.tables:
            if t.position is None or t.position.snapshot is not None or t.checked < 0:
                return False
            if t.checked > t.position.version and now - t.position_written_at > self.idle_position_interval:
                return False
        return all(t.checked >= current for t in self.tables)

    def _read(self, table: TableState) -> Unit | None:
        """The next unit of ``table``: a snapshot chunk, its changes, or its idle position; None: nothing."""
        tracker, pos = self.tracker, table.position
        assert tracker is not None
        if table.requested is not None:
            return self._snapshot_start(table, True, table.requested)
        if pos is None:
            return self._snapshot_start(table, False)
        if pos.snapshot is not None:
            return self._chunk(table, pos.version, pos.snapshot)
        try:
            changes, reached = self.db(lambda: tracker.changes(table.ref, pos.version, limit=self.batch_size,
                                                               stamped=True))
        except ResyncRequired as exc:
            log.warning("%s; re-snapshotting %s", exc, table.name)
            metrics.RESNAPSHOTS.labels(table.name).inc()
            return self._snapshot_start(table, True)
        if not changes:
            table.checked = reached
            idle = time.monotonic() - table.position_written_at > self.idle_position_interval
            return Unit(table, Position(reached, now_ms())) if reached > pos.version and idle else None
        if any(c.row is not None and frozenset(c.row) != table.fields for c in changes):
            self.refresh_schema(table)
        now = now_ms()
        return Unit(table, Position(reached, now), [(OPS[c.op], c.key, c.row, c.version, now, "false")
                                                    for c in changes])

    def _snapshot_start(self, table: TableState, resnapshot: bool, request: str | None = None) -> Unit:
        """Take the version the snapshot starts at, then read its first chunk."""
        assert self.tracker is not None
        self.refresh_schema(table)
        version = int(self.db(self.tracker.current_version))
        return self._chunk(table, version, SnapshotProgress(None, 0, now_ms(), resnapshot), request)

    def _chunk(self, table: TableState, version: int, progress: SnapshotProgress, request: str | None = None) -> Unit:
        """The next chunk of the table's snapshot; the last one of a re-snapshot also deletes stale keys."""
        tracker = self.tracker
        assert tracker is not None
        rows, last = self.db(lambda: tracker.snapshot_chunk(table.ref, progress.after, self.snapshot_chunk_rows))
        done = len(rows) < self.snapshot_chunk_rows  # the progress after it: None once the snapshot is complete
        after = None if done else dataclasses.replace(progress, after=last, rows=progress.rows + len(rows))
        if any(frozenset(row) != table.fields for row in rows[:1]):
            self.refresh_schema(table)
        assert table.schemas is not None
        key_of, started = table.schemas.key_of, progress.started_ms
        events = [(Op.READ, key_of(row), row, version, started, "true") for row in rows]
        if done and progress.resnapshot:
            events += [(Op.DELETE, key, None, version, started, "true")
                       for key in self._stale_keys(table, version, started, rows)]
        return Unit(table, Position(version, now_ms(), after), events, progress, done, request)

    def _stale_keys(self, table: TableState, version: int, started_ms: int,
                    last_chunk: list[dict[str, Any]]) -> list[dict[str, Any]]:
        assert table.schemas is not None and self.codec is not None
        codec, schemas = self.codec, table.schemas
        encoded = [codec.encode_key(table.topic, schemas.key, schemas.key_of(row)) for row in last_chunk]
        return stale_keys(self.base_config, table.topic, codec, version, started_ms, encoded)
