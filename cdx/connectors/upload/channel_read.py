"""The channel upload's source: what is new in a channel's upload tables, in one database snapshot.

:class:`ChannelRows` is the stage's :class:`cdx.stage.contract.Source`; a record is one table's
:class:`Pending` work, the position each table's :class:`UploadPosition` by its key ``<channel>/<table>``.

Contract of a read (``read_pending``)
- ``read_pending`` reads every table that is not halted in **one** snapshot (``read_snapshot``):
  first the open gaps' counters (at most ``batch_size`` rows), then the rows above the position's
  high counter (at most ``batch_size`` more).
- It never changes a table's position: each ``Pending`` holds an advanced **copy**, which the
  uploader stores only once the Kafka transaction carrying the rows and that copy committed.
- A table whose counters went backwards gets a ``Pending`` with no rows and a halted position
  (:func:`cdx.connectors.upload.guards.backwards_reason`); a table with nothing new gets none.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cdx import controls
from cdx.codec import SchemaStore, TableSchemas, murmur2_partition
from cdx.connectors.upload import guards, metrics
from cdx.connectors.upload.plan import UploadOptions, position_key
from cdx.connectors.upload.positions import UploadPosition, resume
from cdx.connectors.upload.records import value_namespace
from cdx.connectors.upload.source import SourceRow, UploadSource, close_quietly, db_error, open_database, read_snapshot
from cdx.dialects import Connection, Dialect, get_dialect
from cdx.errors import RetriableError
from cdx.topology import Subjob
from cdx.topology.model import Channel

log = logging.getLogger("cdx.upload")

Positions = dict[str, UploadPosition]
"""A channel upload's position: each table's ``UploadPosition`` by its key ``<channel>/<table>``."""


class ChannelDatabaseError(RetriableError):
    """Reading a channel database failed (unreachable, missing table or column...), with the typed error's
    message; its ``__cause__`` is the database's exception. The channel is retried with backoff; others continue."""


@dataclass
class UploadTable:
    """One upload table of a channel: its read plan, position key, schemas, partition and position."""

    subjob: Subjob
    source: UploadSource
    key: str
    schemas: TableSchemas
    partition: int
    position: UploadPosition


@dataclass
class Pending:
    """What one poll publishes for one table: rows, the advanced position, gaps closed or given up."""

    table: UploadTable
    position: UploadPosition
    rows: list[SourceRow] = field(default_factory=list)
    closed: list[Any] = field(default_factory=list)
    late: int = 0
    timed_out: list[Any] = field(default_factory=list)


def read_pending(tables: list[UploadTable], dialect: Dialect, conn: Connection, opts: UploadOptions) -> list[Pending]:
    """Read every table once in one snapshot (see the module docstring); database errors propagate."""
    now = int(time.time() * 1000)
    work: list[Pending] = []
    with read_snapshot(dialect, conn) as snap:
        for t in tables:
            if t.position.halted:
                continue
            pending = _read_table(t, conn, opts, now, snap)
            if pending is not None:
                work.append(pending)
    return work


def _read_table(t: UploadTable, conn: Connection, opts: UploadOptions, now: int, snap: Any) -> Pending | None:
    """One table's new rows and advanced position (None: nothing changed)."""
    pos = t.position.copy()
    rows: list[SourceRow] = []
    upto = None
    if pos.gaps:
        rows += t.source.read_ranges(conn, [(g.start, g.end) for g in pos.gaps], opts.batch_size)
        if len(rows) >= opts.batch_size:
            upto = rows[-1].counter  # the gap re-read is incomplete above this counter
    rows += t.source.read_tail(conn, pos.high, opts.batch_size)
    if not rows or rows[-1].counter <= pos.high:  # nothing above high: did the counters go back?
        pos.halted = guards.backwards_reason(str(t.source.table), pos.high, t.source.next_counter_floor(conn))
        if pos.halted:
            return Pending(t, pos)
    adv = pos.advance([r.counter for r in rows], now_ms=now, horizon_token=snap.token,
                      horizon_passed=snap.passed, grace_ms=int(opts.gap_grace * 1000),
                      timeout_ms=int(opts.gap_timeout * 1000), gaps_read_upto=upto)
    if not adv.changed:
        return None
    wanted = set(adv.publish)
    fresh = []
    for r in rows:
        if r.counter in wanted:
            wanted.discard(r.counter)
            fresh.append(r)
    return Pending(t, pos, fresh, adv.closed, adv.late, adv.timed_out)


class ChannelRows:
    """The channel upload's source (see the module docstring). The positions come from the target
    (``stored``: what is committed); a table takes a new one only once committed, and after a rewind
    (a failed transaction: perhaps a lost producer) every table takes the target's again. Any database
    trouble closes the connection (reconnected by the next poll) and raises ``ChannelDatabaseError``."""

    def __init__(self, channel: Channel, subjobs: list[Subjob], store: SchemaStore, prefix: str,
                 options: UploadOptions, stored: Callable[[], Positions], partitions: Callable[[], int],
                 stop: threading.Event) -> None:
        self.channel, self.subjobs, self.store, self.prefix, self.options = channel, subjobs, store, prefix, options
        self.stored, self.partitions, self.stop = stored, partitions, stop
        self.dialect = get_dialect(channel.database.dialect.value)
        self.conn: Connection | None = None
        self.tables: list[UploadTable] = []
        self.paused = False
        self._rewound = False

    def open(self) -> None:
        self._database_errors(self._connect)

    def _connect(self) -> None:
        """(Re)connect to the channel database and build the read plans at the stored positions."""
        self.close()
        conn = open_database(self.channel.database, read_snapshots=True)
        try:
            stored, partitions = self.stored(), self.partitions()
            tables = [self._table(conn, subjob, stored, partitions) for subjob in self.subjobs]
            conn.rollback()
        except BaseException:
            close_quietly(conn)
            raise
        self.conn, self.tables, self._rewound = conn, tables, False
        for t in tables:
            gauges(self.channel.id, t)

    def _table(self, conn: Connection, subjob: Subjob, stored: Positions, partitions: int) -> UploadTable:
        source = UploadSource(self.dialect, conn, subjob)
        key = position_key(self.channel.id, str(source.table))
        schemas = self.store.register_table(
            value_namespace(self.prefix, subjob.hq_table.schema, subjob.hq_table.name), source.codec_columns())
        return UploadTable(subjob, source, key, schemas, murmur2_partition(str(source.table).encode(), partitions),
                           resume(stored.get(key), source.counter))

    def poll(self, max_records: int, max_wait: float) -> Sequence[Pending]:
        """Every table's new rows (one snapshot); nothing while paused (``cdx channel pause``)."""
        work = self._database_errors(self._read)
        if not work:
            self.stop.wait(max_wait)
        return work

    def _read(self) -> list[Pending]:
        if self.conn is None:
            self._connect()
        elif self._rewound:
            stored = self.stored()
            for t in self.tables:
                t.position = resume(stored.get(t.key), t.source.counter)
            self._rewound = False
        if self._paused():
            return []
        assert self.conn is not None
        return read_pending(self.tables, self.dialect, self.conn, self.options)

    def _database_errors(self, step: Callable[[], Any]) -> Any:
        try:
            return step()
        except Exception as exc:
            self.close()
            raise ChannelDatabaseError(str(db_error(self.dialect, exc, f"channel {self.channel.id} database"))) from exc

    def _paused(self) -> bool:
        """Read from the channel database at every poll; logged when it changes."""
        assert self.conn is not None
        try:
            paused = controls.read(self.conn, self.dialect).paused
        finally:
            self.conn.rollback()
        if (paused is not None) != self.paused:
            self.paused = paused is not None
            log.info("channel %s: upload %s", self.channel.id, f"paused ({paused})" if paused else "resumed")
        return self.paused

    def position(self, records: Sequence[Pending]) -> Positions:
        return {p.table.key: p.position for p in records}

    def committed(self, position: Positions) -> None:
        for t in self.tables:
            if t.key in position:
                t.position = position[t.key]
                gauges(self.channel.id, t)

    def rewind(self) -> None:
        self._rewound = True

    def close(self) -> None:
        close_quietly(self.conn)
        self.conn = None


def gauges(channel_id: str, t: UploadTable) -> None:
    metrics.OPEN_GAPS.labels(channel_id, str(t.source.table)).set(t.position.open_gaps())
    metrics.LOW_WATERMARK.labels(channel_id, str(t.source.table)).set(t.position.low)
