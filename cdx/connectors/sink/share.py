"""The channel's share of a host's shared feed, as a stage source (:class:`cdx.stage.contract.Source`).

- **The feed's side** (``feed.Reader``; the feed thread and a worker use it at once, under ``_mu``):
  ``wants`` (partition -> next offset; None: nothing now, as the database is not open, a resync is due
  or the inbox is full), ``full`` (only the inbox is: the feed keeps the partitions assigned),
  ``offer`` (takes a record when it is the next one of its partition; the inbox holds up to ``limit``
  records when ``wants`` is asked, so one more fetched batch still goes in: up to twice that),
  ``skip_to`` (markers, compacted offsets), ``resync_needed``.
- **The stage's side**: ``poll`` pops up to a batch from the inbox and decodes it; ``position(records)``
  is the batch itself (the target stores its offsets and watermarks); ``rewind`` drops what was fetched
  and wants every partition again from the offsets the database holds; ``stop_wanting`` stops taking.
- **The gate** (``cdx channel pause``, distribution schedules: ``gate``): refreshed between batches;
  ``poll`` cuts each partition at its first held-back record: the position there goes back to that
  record and the partition is wanted no more (``held``); when the gate changes, held partitions are
  wanted again from their held records.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Message

from cdx.connectors.sink import metrics
from cdx.connectors.sink.gate import Gate
from cdx.connectors.sink.kafkaops import watermarks
from cdx.connectors.sink.records import Decoder, Record, decode_message
from cdx.connectors.sink.spec import SinkSpec
from cdx.connectors.sink.state import SinkState

log = logging.getLogger("cdx.sink")


class FeedShare:
    """Mixin of ``ChannelSink`` (which sets these attributes); ``_init_share`` first."""

    spec: SinkSpec
    decoder: Decoder
    state: SinkState
    gate: Gate | None
    held: dict[int, int]
    """Partitions stopped at a held-back record: partition -> its offset."""
    conn: Any
    status: str
    kafka_config: dict[str, Any]
    consumer_restarts: int
    _labels: dict[str, str]
    _resync_due: str | None

    def _init_share(self, limit: int) -> None:
        self._mu = threading.Lock()
        """Guards what the feed thread and the workers share: inbox, positions wanted, held, scheduling."""
        self._inbox: deque[Message] = deque()
        self._next: dict[int, int] = {}
        self._accepting = False
        self._limit = limit
        self.positions: dict[int, int] = {}
        """Positions up to which everything is handled (seen while idle): with ``state``, tells whether
        the sink reached given end offsets (``caught_up``)."""

    @property
    def name(self) -> str:
        return self.spec.owner_id

    @property
    def topic(self) -> str:
        return self.spec.topic

    # ------------------------------------------------------------------------ the feed's side
    def wants(self, partitions: list[int]) -> dict[int, int] | None:
        with self._mu:
            if not self._accepting or self._resync_due is not None or len(self._inbox) >= self._limit:
                return None
            return {p: self._next.get(p, OFFSET_BEGINNING) for p in partitions if p not in self.held}

    def full(self) -> bool:
        """Whether ``wants`` says nothing only because the inbox is full."""
        with self._mu:
            return self._accepting and self._resync_due is None and len(self._inbox) >= self._limit

    def offer(self, partition: int, offset: int, cursor: int, msg: Message) -> bool:
        """Take ``msg`` into the inbox (undecoded: the worker decodes its batch, ``poll``). Up to twice the
        limit ``wants`` keeps to: a batch the feed fetched while there was room goes in whole (a record
        refused here is fetched again, after a re-positioning of the partition)."""
        with self._mu:
            if not self._accepting or partition in self.held or len(self._inbox) >= 2 * self._limit:
                return False
            if not cursor <= self._next.get(partition, OFFSET_BEGINNING) <= offset:
                return False
            self._inbox.append(msg)
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

    # ----------------------------------------------------------------------- the stage's side
    def poll(self, max_records: int, max_wait: float = 0.0) -> list[Record]:
        """Up to ``max_records`` records from the inbox, decoded, cut by the gate (never waits: the feed
        kicks the sink when records came)."""
        with self._mu:
            msgs = [self._inbox.popleft() for _ in range(min(max_records, len(self._inbox)))]
        return self._cut([decode_message(self.decoder, m) for m in msgs])

    def _ready(self) -> bool:
        """Whether the worker should take a batch now: whenever the inbox has records."""
        with self._mu:
            return bool(self._inbox)

    def position(self, records: Sequence[Record]) -> Sequence[Record]:
        return records

    def committed(self, position: Sequence[Record]) -> None:
        """Nothing to do: the database holds the offsets (``state`` is updated by the target's commit)."""

    def rewind(self) -> None:
        """Want every partition again from the offsets the database holds (what was fetched is dropped)."""
        with self._mu:
            self._inbox.clear()
            self._next = dict(self.state.offsets)
            self.held.clear()
            self.positions.clear()
            self._accepting = True

    def stop_wanting(self) -> None:
        with self._mu:
            self._accepting = False
            self._inbox.clear()

    def note_positions(self) -> None:
        """With nothing in the inbox, everything before the positions wanted is handled."""
        with self._mu:
            if not self._inbox and self._accepting:
                self.positions.update((p, o) for p, o in self._next.items() if o >= 0 and p not in self.held)

    # ---------------------------------------------------------------------------- the gate
    def _end_offsets(self) -> Mapping[int, int]:
        return watermarks(self.kafka_config, self.spec.topic)[1]

    def _refresh_gate(self, *, force: bool = False) -> None:
        """Between batches: re-read pause and schedules; a change lets held partitions be read again."""
        if self.gate is None or self.conn is None:
            return
        try:
            changed = self.gate.refresh(self.conn, self._end_offsets, force=force)
        except Exception as e:  # the next batch deals with a database that went away
            log.debug("sink %s: cannot read the controls: %s", self.name, e)
            return
        if changed and self.held:
            with self._mu:
                self._next.update(self.held)  # read them again from their held records
                self.held.clear()
        self.status = "paused" if self.gate.paused else ("running" if self.status == "paused" else self.status)

    def _paused(self, *, refresh: bool = False) -> bool:
        """Whether ``cdx channel pause`` holds this database (``refresh``: read it now)."""
        if self.gate is None:
            return False
        if refresh:
            self.gate.refresh(self.conn, None, force=True)
        return self.gate.paused

    def _cut(self, records: list[Record]) -> list[Record]:
        """The records the gate lets through; the partitions it holds stop at their held record."""
        if self.gate is None:
            return records
        out, held = self.gate.cut(records)
        if held:
            with self._mu:
                self.held.update(held)
                self._next.update(held)
                self._inbox = deque(m for m in self._inbox if m.partition() not in held)
        return out
