"""The HQ upload sink's source bookkeeping, without a broker: a rewind re-delivers exactly the records
polled since the last commit, in order; a commit forgets the records it covers; positions are the
offsets after a batch by ``<topic>/<partition>``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cdx.connectors.upload.sink_kafka import UploadTopics, offsets_after


@dataclass
class Msg:
    t: str
    p: int
    o: int

    def topic(self) -> str:
        return self.t

    def partition(self) -> int:
        return self.p

    def offset(self) -> int:
        return self.o

    def error(self) -> None:
        return None


class Consumer:
    """Hands out prepared batches (``consume(n, timeout)`` as confluent-kafka's, one batch per call)."""

    def __init__(self, batches: list[list[Msg]]) -> None:
        self.batches = batches
        self.commits: list[Any] = []

    def consume(self, n: int, timeout: float) -> list[Msg]:
        return self.batches.pop(0)[:n] if self.batches else []

    def commit(self, offsets: Any, asynchronous: bool) -> None:
        self.commits.append(offsets)


class Catalog:
    channels = {"u.a": "a", "u.b": "b"}


def source(batches: list[list[Msg]]) -> UploadTopics:
    s = UploadTopics(Catalog(), {}, "g", None, dict)  # type: ignore[arg-type]
    s.consumer = Consumer(batches)  # type: ignore[assignment]
    return s


def test_positions_are_the_offsets_after_the_batch() -> None:
    batch: list[Any] = [Msg("u.a", 0, 4), Msg("u.b", 1, 9), Msg("u.a", 0, 5)]
    assert offsets_after(batch) == {"u.a/0": "6", "u.b/1": "10"}


def test_rewind_redelivers_what_was_not_committed_in_order() -> None:
    first = [Msg("u.a", 0, 0), Msg("u.a", 0, 1), Msg("u.b", 0, 0), Msg("u.a", 0, 2)]
    s = source([[first[0]], first[1:]])
    assert s.poll(10, 0) == first
    s.committed({"u.a/0": "2"})                     # a prefix of u.a committed (an isolated half)
    s.rewind()
    assert s.poll(2, 0) == [first[2], first[3]]      # the rest, in order, at most max_records
    s.rewind()
    assert s.poll(10, 0) == [first[2], first[3]]
    s.committed({"u.a/0": "3", "u.b/0": "1"})
    s.rewind()
    assert s.poll(10, 0) == []


def test_records_of_a_channel_removed_meanwhile_are_not_redelivered() -> None:
    s = source([[Msg("u.a", 0, 0), Msg("u.b", 0, 0)]])
    s.poll(10, 0)
    s.rewind()
    s.catalog.channels = {"u.a": "a"}
    assert s.poll(10, 0) == [Msg("u.a", 0, 0)]
