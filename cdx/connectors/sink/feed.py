"""``Feed``: one Kafka consumer shared by many channels that read with the same Kafka identity.

Contract
- No consumer group: the feed ``assign()``s the partitions of its readers' group topics itself, and
  each channel keeps its position in its own database (see ``runner``). Several channels of one group
  read the same partitions at different offsets: the feed reads each partition from the lowest offset
  a reader wants (``Reader.wants``) and offers every record to each reader of its topic
  (``Reader.offer``); a reader takes it when the record is the next one it needs, i.e. when its
  position lies between the feed's cursor and the record's offset (offsets between those were empty:
  compacted away, or transaction markers). A reader further behind than the cursor (it was rewound
  to its database's offsets, released held records, or drained a full inbox) makes the feed
  re-position the partition at the reader's offset; the others skip what they already have.
- A reader that wants nothing (database unreachable, standing by, paused, inbox full) is left out,
  so it never holds back the others; a partition nobody wants is unassigned, except while no reader
  wants anything and some are only full (``Reader.full``): then nothing is consumed and the partitions
  stay assigned, so what librdkafka prefetched is kept (a bootstrap fills its inbox again and again:
  unassigning dropped the prefetched records, which were fetched again).
- While nothing arrives, records before the consumer's position are markers or gone: the readers
  there are moved on (``Reader.skip_to``), so they see themselves caught up with the end offsets.
- ``auto.offset.reset=error``: an offset that left the log is reported to the readers positioned
  there (``Reader.resync_needed``), never a silent jump. A fatal consumer error replaces the consumer;
  readers keep their positions (nothing of it was committed anywhere).
- Thread-safety: ``run`` (one thread) owns the consumer and is the only one to call it (a call from
  another thread can block behind ``consume``); ``add``/``remove``/``ends`` may be called from any thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition

from cdx.cleanup import quietly
from cdx.kafka.batches import next_batch
from cdx.kafka.config import consumer_config

log = logging.getLogger("cdx.sink")

METADATA_EVERY = 30.0
"""Seconds between partition-count look-ups of a topic (2 s while it does not exist yet)."""
FORWARD_SEEK = 10_000
"""A partition whose lowest wanted offset is this far ahead of the cursor is re-positioned forward."""


class Reader(Protocol):
    """The channel side of a feed (``ChannelSink``); every method is quick and thread-safe."""

    @property
    def name(self) -> str: ...

    @property
    def topic(self) -> str: ...

    def wants(self, partitions: list[int]) -> dict[int, int] | None:
        """Partition -> next offset wanted (``OFFSET_BEGINNING``: the earliest), None: nothing now."""

    def offer(self, partition: int, offset: int, cursor: int, msg: Message) -> bool:
        """Take ``msg`` when the reader's position is within ``[cursor, offset]``."""

    def full(self) -> bool:
        """Whether ``wants`` said None only because the reader has all the records it can hold now."""

    def skip_to(self, partition: int, cursor: int, position: int) -> None:
        """Nothing for the readers in ``[cursor, position)``."""

    def resync_needed(self, partition: int, cursor: int, reason: str) -> None:
        """The offset ``cursor`` of ``partition`` left the log."""

    def consumer_replaced(self) -> None:
        """The shared consumer failed fatally and was replaced."""


class Feed:
    """One consumer for the readers of one Kafka identity (see the module docstring)."""

    def __init__(self, name: str, config: Mapping[str, Any], group_id: str, *, batch_size: int,
                 poll_timeout: float, queued_max_kbytes: int, on_ready: Callable[[Reader], None],
                 overrides: Mapping[str, Any] | None = None) -> None:
        self.name = name
        self.config = dict(config)
        self.group_id = group_id
        self.batch_size, self.poll_timeout, self.kb = batch_size, poll_timeout, queued_max_kbytes
        self.on_ready = on_ready
        self.overrides = dict(overrides or {})
        self.consumer: Consumer | None = None
        self._readers: dict[str, list[Reader]] = {}
        self._mu = threading.Lock()
        self._partitions: dict[str, list[int]] = {}
        self._looked_up: dict[str, float] = {}
        self.cursor: dict[tuple[str, int], int] = {}
        """Assigned partitions -> the offset the feed expects next."""
        self._warned: dict[int, float] = {}
        self._ends: dict[str, dict[int, int]] = {}
        self._holding = False
        """No reader wants anything now and some are only full: the assignment is kept, nothing consumed."""

    # ------------------------------------------------------------------------------ readers
    def add(self, reader: Reader) -> None:
        with self._mu:
            self._readers.setdefault(reader.topic, []).append(reader)

    def remove(self, reader: Reader) -> None:
        with self._mu:
            readers = self._readers.get(reader.topic, [])
            if reader in readers:
                readers.remove(reader)
            if not readers:
                self._readers.pop(reader.topic, None)

    def readers(self) -> dict[str, list[Reader]]:
        with self._mu:
            return {t: list(rs) for t, rs in self._readers.items()}

    def ends(self, topic: str) -> dict[int, int]:
        """The end offsets of ``topic``'s assigned partitions as of the last fetch (no broker call; the
        consumer is only ever called from the feed's thread)."""
        return dict(self._ends.get(topic, {}))

    def _note_ends(self) -> None:
        assert self.consumer is not None
        ends: dict[str, dict[int, int]] = {}
        for t, p in list(self.cursor):
            try:
                _, high = self.consumer.get_watermark_offsets(TopicPartition(t, p), cached=True)
            except KafkaException:
                continue
            if high >= 0:
                ends.setdefault(t, {})[p] = high
        self._ends = ends

    # --------------------------------------------------------------------------------- loop
    def run(self, stop: threading.Event) -> None:
        """Serve the readers until ``stop``."""
        try:
            while not stop.is_set():
                self.step(stop)
        finally:
            self.close()

    def step(self, stop: threading.Event) -> None:
        readers = self.readers()
        if self.consumer is None:
            self.consumer = self._new_consumer()
        self._plan(readers)
        if not self.cursor or self._holding:
            stop.wait(self.poll_timeout)
            return
        msgs = next_batch(self.consumer, self.batch_size, self.poll_timeout)  # never waits for a full batch
        self._dispatch(readers, msgs)
        if self.consumer is not None:
            self._note_ends()

    def close(self) -> None:
        if self.consumer is not None:
            quietly(self.consumer.close, f"feed {self.name}: closing its consumer", log)
            self.consumer = None
        self.cursor.clear()

    def _new_consumer(self) -> Consumer:
        kb = self.kb
        cfg = consumer_config(self.config, self.group_id)
        cfg.update({"queued.max.messages.kbytes": kb,
                    "auto.offset.reset": "error",  # an offset that left the log is a resync, never a jump
                    "fetch.max.bytes": max(1024 * kb // 2, 1 << 20),  # >= message.max.bytes
                    "max.partition.fetch.bytes": max(64 << 10, min(1 << 20, 1024 * kb // 4))})
        cfg.update(self.overrides)
        return Consumer(cfg)

    # ------------------------------------------------------------------------------ planning
    def _plan(self, readers: Mapping[str, list[Reader]]) -> None:
        """Assign, re-position and unassign partitions after what the readers want now."""
        targets: dict[tuple[str, int], int] = {}
        full = False
        for topic, rs in readers.items():
            parts = self._partitions_of(topic)
            for r in rs:
                wanted = r.wants(parts)
                if wanted is None:
                    full = full or r.full()
                    continue
                for p, w in wanted.items():
                    tp = (topic, p)
                    targets[tp] = min(w, targets.get(tp, w))
        self._holding = full and not targets
        if self._holding:
            return
        drop = [tp for tp in self.cursor if tp not in targets]
        move = {tp: off for tp, off in targets.items() if tp not in self.cursor or off < self.cursor[tp]
                or off > self.cursor[tp] + FORWARD_SEEK}
        moved = [tp for tp in move if tp in self.cursor]
        self._unassign([*drop, *moved])
        if move:
            self._assign(move)

    def _assign(self, offsets: Mapping[tuple[str, int], int]) -> None:
        assert self.consumer is not None
        try:
            self.consumer.incremental_assign([TopicPartition(t, p, off) for (t, p), off in offsets.items()])
        except KafkaException as e:
            log.warning("feed %s: cannot assign %s: %s", self.name, sorted(offsets), e)
            return
        self.cursor.update(offsets)
        log.debug("feed %s: assigned %s", self.name, dict(offsets))

    def _unassign(self, tps: list[tuple[str, int]]) -> None:
        if not tps:
            return
        assert self.consumer is not None
        for tp in tps:
            self.cursor.pop(tp, None)
        try:
            self.consumer.incremental_unassign([TopicPartition(t, p) for t, p in tps])
        except KafkaException as e:
            log.debug("feed %s: unassign %s: %s", self.name, tps, e)

    def _partitions_of(self, topic: str) -> list[int]:
        known = self._partitions.get(topic, [])
        every = METADATA_EVERY if known else 2.0
        if time.monotonic() - self._looked_up.get(topic, -every) < every:
            return known
        self._looked_up[topic] = time.monotonic()
        assert self.consumer is not None
        try:
            meta = self.consumer.list_topics(topic, timeout=5).topics.get(topic)
        except KafkaException as e:
            log.debug("feed %s: metadata of %s: %s", self.name, topic, e)
            return known
        if meta is None or meta.error is not None or not meta.partitions:
            if self._first_in_a_while(KafkaError.UNKNOWN_TOPIC_OR_PART):
                log.warning("feed %s: group topic %s not found yet (the router creates it)", self.name, topic)
            return known
        self._partitions[topic] = sorted(meta.partitions)
        return self._partitions[topic]

    # ------------------------------------------------------------------------------ dispatch
    def _dispatch(self, readers: Mapping[str, list[Reader]], msgs: list[Message]) -> None:
        ready: dict[int, Reader] = {}
        touched: set[tuple[str, int]] = set()
        for m in msgs:
            if m.error() is not None:
                if self._error(readers, m):
                    return
                continue
            topic, p, o = m.topic() or "", m.partition() or 0, m.offset() or 0
            tp = (topic, p)
            cur = self.cursor.get(tp)
            if cur is None or o < cur:
                continue  # fetched before a re-positioning
            for r in readers.get(topic, ()):
                if r.offer(p, o, cur, m):
                    ready[id(r)] = r
            self.cursor[tp] = o + 1
            touched.add(tp)
        self._skip_idle(readers, [tp for tp in self.cursor if tp not in touched])
        for r in ready.values():
            self.on_ready(r)

    def _skip_idle(self, readers: Mapping[str, list[Reader]], idle: list[tuple[str, int]]) -> None:
        """Partitions with nothing new: the consumer's position is past markers (no broker call)."""
        if not idle or self.consumer is None:
            return
        try:
            positions = self.consumer.position([TopicPartition(t, p) for t, p in idle])
        except KafkaException as e:
            log.debug("feed %s: position: %s", self.name, e)
            return
        for tp in positions:
            key = (tp.topic, tp.partition)
            cur = self.cursor.get(key)
            if cur is None or tp.offset < 0 or tp.offset <= cur:
                continue
            for r in readers.get(tp.topic, ()):
                r.skip_to(tp.partition, cur, tp.offset)
            self.cursor[key] = tp.offset

    def _error(self, readers: Mapping[str, list[Reader]], m: Message) -> bool:
        """Handle an error event; True when the consumer was replaced (the rest of the batch is dropped)."""
        err = m.error()
        assert err is not None
        if err.fatal() or err.code() == KafkaError._FATAL:
            log.warning("feed %s: Kafka consumer failed (%s); starting a new one at the channels' positions",
                        self.name, err.str())
            self.close()
            for rs in readers.values():
                for r in rs:
                    r.consumer_replaced()
            return True
        if err.code() == KafkaError._AUTO_OFFSET_RESET and m.topic():
            tp = (m.topic() or "", m.partition() or 0)
            cur = self.cursor.get(tp, OFFSET_BEGINNING)
            log.warning("feed %s: %s", self.name, err)
            for r in readers.get(tp[0], ()):
                r.resync_needed(tp[1], cur, f"the consumer's offset left the log while running: {err.str()}")
            self._unassign([tp])
            return False
        if err.code() != KafkaError._PARTITION_EOF and self._first_in_a_while(err.code()):
            hint = " (the router creates it)" if err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART else ""
            log.warning("feed %s: %s%s", self.name, err, hint)
        return False

    def _first_in_a_while(self, code: int, every: float = 60.0) -> bool:
        now = time.monotonic()
        if now - self._warned.get(code, -every) < every:
            return False
        self._warned[code] = now
        return True
