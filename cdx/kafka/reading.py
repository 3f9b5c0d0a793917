"""Reading topics without a consumer group: watermarks, to the end, from a position, the latest value per key."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Generator, Iterator, Mapping
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition

from cdx.kafka.admin import partitions_of

log = logging.getLogger("cdx.kafka")

_LEADERSHIP = (KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE, KafkaError.UNKNOWN_TOPIC_OR_PART,
               KafkaError._UNKNOWN_PARTITION)


def assign_only_consumer(config: Mapping[str, Any], isolation: str = "read_committed") -> Consumer:
    """A consumer for ``assign`` and offset look-ups: it never joins or commits to its throw-away group
    (``cdx-reader-*``, the prefix the ACLs let every principal describe)."""
    return Consumer({**config, "group.id": f"cdx-reader-{uuid.uuid4().hex}", "enable.auto.commit": False,
                     "isolation.level": isolation, "auto.offset.reset": "earliest"})


def watermarks(config: Mapping[str, Any], topic: str, timeout: float = 10.0,
               isolation: str = "read_committed") -> tuple[dict[int, int], dict[int, int]]:
    """``(low, high)`` offsets per partition (high under ``isolation``: read_committed, the last stable
    offset). Empty when the topic is missing."""
    consumer = assign_only_consumer(config, isolation)
    try:
        marks = {p: partition_watermarks(consumer, topic, p, timeout) for p in partitions_of(config, topic, timeout)}
    finally:
        consumer.close()
    return {p: low for p, (low, _) in marks.items()}, {p: high for p, (_, high) in marks.items()}


def high_watermarks(config: Mapping[str, Any], topic: str, timeout: float = 10.0, *,
                    committed: bool = True) -> dict[int, int]:
    """The end offset of each partition: the next offset to be written, or with ``committed`` (read_committed)
    the last stable offset (before the first record of a transaction still open)."""
    return watermarks(config, topic, timeout, "read_committed" if committed else "read_uncommitted")[1]


def partition_watermarks(consumer: Consumer, topic: str, partition: int, timeout: float) -> tuple[int, int]:
    """``get_watermark_offsets``, retried while leadership moves (a new topic, a broker restart)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)
            return int(low), int(high)
        except KafkaException as exc:
            err = exc.args[0]
            transient = isinstance(err, KafkaError) and (err.retriable() or err.code() in _LEADERSHIP)
            if not transient or time.monotonic() >= deadline:
                raise
            time.sleep(0.1)


def low_watermarks(config: Mapping[str, Any], topic: str, timeout: float = 10.0) -> dict[int, int]:
    return watermarks(config, topic, timeout)[0]


def _known_leaders(consumer: Consumer, topic: str, timeout: float) -> None:
    """Take ``topic``'s metadata before ``assign``: a partition assigned at a logical offset (the beginning)
    before its leader is known waits librdkafka's fixed 500 ms offset-query retry. Unanswered: ``assign``
    finds the leaders itself, as before."""
    try:
        consumer.list_topics(topic, timeout=min(timeout, 5.0))
    except KafkaException as exc:
        log.debug("metadata of %s before reading it: %s", topic, exc)


def read_to_end(config: Mapping[str, Any], topic: str, *, start: Mapping[int, int] | None = None,
                batch: int = 1000, timeout: float = 30.0) -> Iterator[Message]:
    """Every committed message of ``topic`` from ``start`` (default: the beginning) up to the end
    offsets observed when the call began. Tombstones are yielded too (value None)."""
    yield from read_range(config, topic, high_watermarks(config, topic), start, batch=batch, timeout=timeout)


def latest_values(config: Mapping[str, Any], topic: str, timeout: float = 30.0) -> dict[str, bytes]:
    """The last value of every (UTF-8) key of a compacted topic (read_committed, to the end; a tombstone
    removes it)."""
    out: dict[str, bytes] = {}
    for msg in read_to_end(config, topic, timeout=timeout):
        key, value = (msg.key() or b"").decode(), msg.value()
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def read_range(config: Mapping[str, Any], topic: str, ends: Mapping[int, int],
               starts: Mapping[int, int] | None = None, *, batch: int = 1000,
               timeout: float = 30.0) -> Generator[Message]:
    """Every committed message of ``topic`` from ``starts`` (default: the beginning) up to, excluding,
    ``ends``, per partition in offset order. Tombstones included. ``TimeoutError`` when no record
    arrives for ``timeout`` seconds while some partition is still short of its end."""
    pending: dict[int, int] = {}
    assignment = []
    for p, end in ends.items():
        first = (starts or {}).get(p, OFFSET_BEGINNING)
        if end > 0 and (first < 0 or first < end):
            assignment.append(TopicPartition(topic, p, first))
            pending[p] = end
    if not assignment:
        return
    consumer = assign_only_consumer(config)
    try:
        _known_leaders(consumer, topic, timeout)
        consumer.assign(assignment)
        deadline = time.monotonic() + timeout
        while pending:
            msgs = consumer.consume(batch, timeout=0.05)
            if not msgs and time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic} to its end timed out; still pending: {pending}")
            for msg in msgs:
                if msg.error() is not None:
                    continue
                deadline = time.monotonic() + timeout
                part, offset = msg.partition() or 0, msg.offset() or 0
                stop = pending.get(part)
                if stop is None or offset >= stop:
                    continue
                yield msg
                if offset + 1 >= stop:
                    del pending[part]
            # the rest of a partition may hold only transaction markers (or compacted-away records)
            for tp in consumer.position([TopicPartition(topic, q) for q in list(pending)]):
                if tp.offset >= 0 and tp.offset >= pending.get(tp.partition, 0):
                    pending.pop(tp.partition, None)
    finally:
        consumer.close()

