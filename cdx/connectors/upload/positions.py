"""Upload positions: how far one upload table of one database has been read, with its gaps.

Replication counters (identity values) are handed out when a row is inserted, not when its
transaction commits, so a row with counter 9 can become visible after the row with counter 10.
"Upload only counters above the largest one received" would lose row 9. A position therefore
keeps, besides the highest counter published (``high``), the **gaps**: counters below ``high``
that were not visible when higher ones were. Every counter up to ``high`` is published, except
those inside a gap.

- ``low`` (the low watermark) is one below the first gap (``high`` when there is none): every
  counter ``<= low`` is published or a permanent gap.
- A gap is a range ``[start, end]`` with the time it was first seen and a ``horizon`` token of the
  database (see :mod:`cdx.connectors.upload.source`): the gap's rows can only belong to transactions
  that were running then. It is re-read every poll; a row that shows up is published and removed
  from its gap. A gap is **closed** (given up: the counters were rolled back, or the rows deleted)
  when the database proves no transaction that could still commit it is running (its horizon has
  passed) and it is older than ``grace``, or in any case once it is older than ``timeout``.

A position may be **halted** (``halted``: why): the table's counters went backwards (a restored
backup, SQLite handing out ``MAX+1`` again after the top rows were deleted), so new rows would get
counters already published and be lost. A halted table is not read until an operator restarts it
at a counter (``cdx channel upload --from-counter N``, :meth:`UploadPosition.restart_at`).

Serialised as JSON: ``{"v": 1, "counter": "REPLICATIONCOUNTERFROMORIGIN", "high": 41,
"gaps": [[9, 9, 1732000000000, 812]], "published": 40, "skipped": 0, "halted": null, "ts_ms": ...}``;
gaps are ``[start, end, first_seen_ms, horizon]``. Positions are pure data: no database or Kafka here.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

VERSION = 1


@dataclass
class Gap:
    """Counters ``start..end`` (inclusive) not seen although a higher counter was."""

    start: int
    end: int
    first_seen_ms: int
    horizon: int = 0

    @property
    def size(self) -> int:
        return self.end - self.start + 1

    def to_json(self) -> list[int]:
        return [self.start, self.end, self.first_seen_ms, self.horizon]


@dataclass
class Advance:
    """What :meth:`UploadPosition.advance` did: counters to publish, gaps opened and closed."""

    publish: list[int] = field(default_factory=list)
    opened: list[Gap] = field(default_factory=list)
    closed: list[Gap] = field(default_factory=list)
    late: int = 0
    """How many of ``publish`` filled a gap (committed after a higher counter)."""
    timed_out: list[Gap] = field(default_factory=list)
    """The gaps of ``closed`` given up after ``timeout`` without proof that they are permanent."""

    @property
    def changed(self) -> bool:
        return bool(self.publish or self.opened or self.closed)


@dataclass
class UploadPosition:
    """The read position of one upload table (see module docstring). Mutable; copy before changing."""

    counter: str
    high: int = 0
    gaps: list[Gap] = field(default_factory=list)
    published: int = 0
    skipped: int = 0
    halted: str | None = None

    @property
    def low(self) -> int:
        """Every counter ``<= low`` is published or was given up."""
        return self.gaps[0].start - 1 if self.gaps else self.high

    def copy(self) -> UploadPosition:
        return dataclasses.replace(self, gaps=[dataclasses.replace(g) for g in self.gaps])

    def is_new(self, counter: int) -> bool:
        """True if ``counter`` has not been published (above ``high`` or inside a gap)."""
        if counter > self.high:
            return True
        return any(g.start <= counter <= g.end for g in self.gaps)

    def open_gaps(self) -> int:
        return sum(g.size for g in self.gaps)

    # ------------------------------------------------------------------------------ updates
    def advance(self, counters: Iterable[int], *, now_ms: int | None = None, horizon_token: int = 0,
                horizon_passed: int | None = None, grace_ms: int = 5_000, timeout_ms: int = 600_000,
                gaps_read_upto: int | None = None) -> Advance:
        """Take the counters just read (gap re-reads and the tail above ``high``, any order).

        Returns the counters to publish (new ones, ascending, each once), the gaps opened (below a
        newly seen counter) and the gaps closed: still missing after this read, older than
        ``grace_ms`` with ``horizon_passed >= gap.horizon`` (``horizon_passed=None``: the database
        cannot tell), or older than ``timeout_ms``. New gaps get ``horizon_token``.
        ``gaps_read_upto``: the gap re-read stopped at its row limit at this counter, so gaps above
        it were not read this time and are not closed.
        """
        now = int(time.time() * 1000) if now_ms is None else now_ms
        out = Advance()
        old_gaps = list(self.gaps)
        seen = sorted({int(c) for c in counters if self.is_new(int(c))})
        for c in seen:
            if c <= self.high:
                self._fill(c)
                out.late += 1
            else:
                if c > self.high + 1:
                    gap = Gap(self.high + 1, c - 1, now, horizon_token)
                    self.gaps.append(gap)
                    out.opened.append(gap)
                self.high = c
            out.publish.append(c)
        # close the gaps that existed before this read and are still (partly) missing
        keep: list[Gap] = []
        for g in self.gaps:
            age = now - g.first_seen_ms
            existed = any(o.start <= g.start and g.end <= o.end for o in old_gaps) and (
                gaps_read_upto is None or g.end <= gaps_read_upto)
            settled = horizon_passed is not None and horizon_passed >= g.horizon and age >= grace_ms
            if existed and (settled or age >= timeout_ms):
                out.closed.append(g)
                if not settled:
                    out.timed_out.append(g)
                self.skipped += g.size
            else:
                keep.append(g)
        self.gaps = sorted(keep, key=lambda g: g.start)
        self.published += len(out.publish)
        return out

    def restart_at(self, counter: int) -> None:
        """Publish again from ``counter`` (inclusive): ``high`` becomes ``counter - 1``, gaps are dropped
        and the halt is lifted. Counters re-sent that HQ already has are absorbed by its insert-only sink."""
        self.high = max(0, int(counter) - 1)
        self.gaps = []
        self.halted = None

    def _fill(self, c: int) -> None:
        for i, g in enumerate(self.gaps):
            if g.start <= c <= g.end:
                parts = []
                if g.start <= c - 1:
                    parts.append(Gap(g.start, c - 1, g.first_seen_ms, g.horizon))
                if c + 1 <= g.end:
                    parts.append(Gap(c + 1, g.end, g.first_seen_ms, g.horizon))
                self.gaps[i:i + 1] = parts
                return

    # -------------------------------------------------------------------------------- JSON
    def to_json(self) -> dict[str, Any]:
        return {"v": VERSION, "counter": self.counter, "high": self.high, "gaps": [g.to_json() for g in self.gaps],
                "published": self.published, "skipped": self.skipped, "low": self.low, "halted": self.halted,
                "ts_ms": int(time.time() * 1000)}

    def encode(self) -> bytes:
        return json.dumps(self.to_json(), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> UploadPosition:
        gaps = [Gap(int(g[0]), int(g[1]), int(g[2]), int(g[3]) if len(g) > 3 else 0) for g in data.get("gaps", [])]
        return cls(str(data["counter"]), int(data.get("high", 0)), sorted(gaps, key=lambda g: g.start),
                   int(data.get("published", 0)), int(data.get("skipped", 0)), data.get("halted"))

    @classmethod
    def decode(cls, raw: bytes | str) -> UploadPosition:
        return cls.from_json(json.loads(raw))


def resume(stored: UploadPosition | None, counter: str) -> UploadPosition:
    """The position to start from: the stored one, or the beginning when there is none or it was
    kept for another counter column (the subjob's ``replication_counter`` changed)."""
    if stored is None or stored.counter.casefold() != counter.casefold():
        return UploadPosition(counter)
    return stored.copy()
