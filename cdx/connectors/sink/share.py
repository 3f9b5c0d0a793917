"""The channel's share of a host's shared feed, as a stage source (:class:`cdx.stage.contract.Source`).

Two sides, guarded by one lock (the feed thread and a worker use it at once):

- **the feed's** (``feed.Reader``): ``wants`` (partition -> next offset, None: nothing now: the database
  is not open, a resync is due or the inbox is full), ``offer`` (takes a record when it is the next one
  of its partition), ``skip_to`` (markers or compacted offsets), ``resync_needed``;
- **the stage's**: ``poll`` pops up to a batch from the inbox and decodes it (the gate cuts held-back
  partitions, see ``gating``); ``position(records)`` is the batch itself (the target stores its
  offsets and watermarks); ``rewind`` drops what was fetched and wants every partition again from the
  offsets the database holds (``state``); ``stop_wanting`` stops taking records (database unreachable).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence

from confluent_kafka import OFFSET_BEGINNING, Message

from cdx.connectors.sink import metrics
from cdx.connectors.sink.gating import GatedSink
from cdx.connectors.sink.records import Decoder, Record, decode_message
from cdx.connectors.sink.state import SinkState


class FeedShare(GatedSink):
    """Mixin of ``ChannelSink`` (which sets ``decoder``, ``state`` and ``_labels``); ``_init_share`` first."""

    decoder: Decoder
    state: SinkState
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
    def topic(self) -> str:
        return self.spec.topic

    # ------------------------------------------------------------------------ the feed's side
    def wants(self, partitions: list[int]) -> dict[int, int] | None:
        with self._mu:
            if not self._accepting or self._resync_due is not None or len(self._inbox) >= self._limit:
                return None
            return {p: self._next.get(p, OFFSET_BEGINNING) for p in partitions if p not in self.held}

    def offer(self, partition: int, offset: int, cursor: int, msg: Message) -> bool:
        with self._mu:
            if not self._accepting or partition in self.held or len(self._inbox) >= self._limit:
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
