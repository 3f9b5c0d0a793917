"""One poll's read of a channel's upload tables: what is new in each, in one database snapshot.

Contract
- ``read_pending`` reads every table that is not halted in **one** snapshot (``ReadSnapshot``):
  first the open gaps' counters (at most ``batch_size`` rows), then the rows above the position's
  high counter (at most ``batch_size`` more).
- It never changes a table's position: each ``Pending`` holds an advanced **copy**, which the
  uploader stores only once the Kafka transaction carrying the rows and that copy committed.
- A table whose counters went backwards gets a ``Pending`` with no rows and a halted position
  (:func:`cdx.connectors.upload.guards.backwards_reason`); a table with nothing new gets none.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from cdx.codec import TableSchemas
from cdx.connectors.upload import guards
from cdx.connectors.upload.plan import UploadOptions
from cdx.connectors.upload.positions import UploadPosition
from cdx.connectors.upload.source import ReadSnapshot, SourceRow, UploadSource
from cdx.dialects import Connection, Dialect
from cdx.topology import Subjob

__all__ = ["Pending", "UploadTable", "read_pending"]


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
    with ReadSnapshot(dialect, conn).open() as snap:
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
