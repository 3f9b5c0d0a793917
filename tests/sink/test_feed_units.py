"""``Feed``: the shared-cursor rules of one consumer serving several channels of one group topic, on an
in-memory stand-in for the consumer (pure unit test; the integration tests run the real one)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from cdx.connectors.sink.feed import Feed

TOPIC = "t"
OFFSETS = [0, 1, 2, 5, 6, 7, 8, 9]
"""Offsets 3-4 compacted away; 10 is a transaction marker (end offset 11)."""
END = 11


@dataclass
class Msg:
    o: int

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return TOPIC

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self.o


class FakeConsumer:
    """One partition; ``consume`` returns the records from the assigned position, the position then
    passes the marker."""

    def __init__(self) -> None:
        self.at: int | None = None
        self.assigns: list[int] = []

    def incremental_assign(self, tps: list[TopicPartition]) -> None:
        (tp,) = tps
        self.at = 0 if tp.offset == OFFSET_BEGINNING else tp.offset
        self.assigns.append(tp.offset)

    def incremental_unassign(self, tps: list[TopicPartition]) -> None:
        self.at = None

    def consume(self, n: int, timeout: float) -> list[Msg]:
        if self.at is None:
            return []
        out = [Msg(o) for o in OFFSETS if o >= self.at][:n]
        self.at = out[-1].o + 1 if out else max(self.at, END)
        return out

    def position(self, tps: list[TopicPartition]) -> list[TopicPartition]:
        return [TopicPartition(TOPIC, 0, self.at if self.at is not None else -1001)]

    def list_topics(self, topic: str, timeout: float) -> Any:
        meta = type("M", (), {"error": None, "partitions": {0: None}})()
        return type("T", (), {"topics": {TOPIC: meta}})()

    def get_watermark_offsets(self, tp: TopicPartition, cached: bool = False) -> tuple[int, int]:
        return 0, END

    def close(self) -> None:
        pass


@dataclass
class Reader:
    """The rules of ``ChannelSink.wants/offer/skip_to``."""

    name: str
    next: int = OFFSET_BEGINNING
    up: bool = True
    got: list[int] = field(default_factory=list)
    room: int | None = None
    """Records the inbox takes yet (None: no limit); at 0 it is full (wants nothing, ``full``)."""

    @property
    def topic(self) -> str:
        return TOPIC

    def wants(self, partitions: list[int]) -> dict[int, int] | None:
        return {0: self.next} if self.up and not self.full() else None

    def full(self) -> bool:
        return self.up and self.room == 0

    def offer(self, partition: int, offset: int, cursor: int, msg: Any) -> bool:
        if self.up and cursor <= self.next <= offset:
            self.got.append(offset)
            self.next = offset + 1
            self.room = None if self.room is None else max(self.room - 1, 0)
            return True
        return False

    def skip_to(self, partition: int, cursor: int, position: int) -> None:
        if self.up and cursor <= self.next < position:
            self.next = position

    def resync_needed(self, partition: int, cursor: int, reason: str) -> None:
        raise AssertionError(reason)

    def consumer_replaced(self) -> None:
        raise AssertionError("replaced")


def feed_of(*readers: Reader) -> tuple[Feed, FakeConsumer]:
    feed = Feed("f", {}, "g", batch_size=3, poll_timeout=0.0, queued_max_kbytes=1024, on_ready=lambda r: None)
    consumer = FakeConsumer()
    feed.consumer = consumer  # type: ignore[assignment]
    for r in readers:
        feed.add(r)
    return feed, consumer


def steps(feed: Feed, n: int = 8) -> None:
    for _ in range(n):
        feed.step(threading.Event())


def test_each_reader_gets_every_record_from_its_position_once_and_passes_the_marker() -> None:
    new, behind, current = Reader("new"), Reader("behind", next=6), Reader("current", next=END)
    feed, consumer = feed_of(new, behind, current)
    steps(feed)
    assert new.got == OFFSETS and behind.got == [6, 7, 8, 9] and current.got == []
    assert new.next == behind.next == current.next == END  # the marker is passed
    assert consumer.assigns == [OFFSET_BEGINNING]


def test_a_reader_that_is_down_holds_nobody_back_and_is_served_from_its_position_later() -> None:
    down, up = Reader("down", next=2, up=False), Reader("up", next=1)
    feed, consumer = feed_of(down, up)
    steps(feed)
    assert up.got == [1, 2, 5, 6, 7, 8, 9] and down.got == []
    down.up = True  # its database answers again: the feed goes back for it
    steps(feed)
    assert down.got == [2, 5, 6, 7, 8, 9] and up.got == [1, 2, 5, 6, 7, 8, 9]
    assert consumer.assigns == [1, 2]


def test_a_rewound_reader_is_served_again_and_the_others_skip_what_they_have() -> None:
    a, b = Reader("a"), Reader("b")
    feed, _ = feed_of(a, b)
    steps(feed)
    a.next = 5  # a batch was dropped (database unreachable): back to the stored offset
    steps(feed)
    assert a.got == [*OFFSETS, 5, 6, 7, 8, 9] and b.got == OFFSETS


def test_nobody_wanting_a_partition_unassigns_it() -> None:
    a = Reader("a", up=False)
    feed, consumer = feed_of(a)
    steps(feed, 2)
    assert consumer.assigns == [] and not feed.cursor


def test_a_full_reader_keeps_its_partitions_assigned_and_nothing_is_consumed_meanwhile() -> None:
    a = Reader("a", room=3)
    feed, consumer = feed_of(a)
    steps(feed)
    assert a.got == [0, 1, 2] and consumer.assigns == [OFFSET_BEGINNING] and consumer.at == 3 and feed.cursor
    a.room = None  # the worker took a batch: it reads on from the assigned position (kept prefetch)
    steps(feed)
    assert a.got == OFFSETS and consumer.assigns == [OFFSET_BEGINNING] and a.next == END
