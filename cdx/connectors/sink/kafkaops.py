"""Kafka look-ups for sink operations: watermarks, tombstone retention, reading a range, first
timestamps. Every function opens its own short-lived client and raises ``RetriableError``
when the cluster does not answer.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import Any

from confluent_kafka import KafkaException, Message, TopicPartition
from confluent_kafka.admin import ConfigResource, ResourceType

from cdx.kafka import reading
from cdx.kafka.lingering import admin_client
from cdx.kafka.reach import kafka_failure


def watermarks(config: Mapping[str, Any], topic: str, timeout: float = 10.0) -> tuple[dict[int, int], dict[int, int]]:
    """``cdx.kafka.reading.watermarks`` (read_committed) with its failures as ``RetriableError``."""
    try:
        return reading.watermarks(config, topic, timeout)
    except (KafkaException, TimeoutError) as e:
        raise kafka_failure(config, e, f"watermarks of {topic}") from e


def delete_retention_ms(config: Mapping[str, Any], topic: str, timeout: float = 10.0) -> int | None:
    """``delete.retention.ms`` of a compacted topic (how long tombstones survive compaction), from its
    effective configuration (``describe_configs``); None when the topic is not compacted (then
    tombstones are never removed on their own)."""
    try:
        with admin_client(config) as admin:
            (future,) = admin.describe_configs([ConfigResource(ResourceType.TOPIC, topic)],
                                               request_timeout=timeout).values()
            cfg = {k: v.value for k, v in future.result(timeout).items() if v.value is not None}
    except (KafkaException, TimeoutError) as e:
        raise kafka_failure(config, e, f"configuration of {topic}") from e
    if "compact" not in cfg.get("cleanup.policy", ""):
        return None
    return int(cfg.get("delete.retention.ms", "86400000"))


def read_range(config: Mapping[str, Any], topic: str, ends: Mapping[int, int], starts: Mapping[int, int] | None = None,
               *, batch: int = 2000, timeout: float = 30.0) -> Iterator[Message]:
    """``cdx.kafka.reading.read_range`` with its failures as ``RetriableError``."""
    try:
        yield from reading.read_range(config, topic, ends, starts, batch=batch, timeout=timeout)
    except (KafkaException, TimeoutError) as e:
        raise kafka_failure(config, e, f"reading {topic}") from e


def first_timestamps(config: Mapping[str, Any], topic: str, starts: Mapping[int, int], ends: Mapping[int, int],
                     timeout: float = 10.0) -> dict[int, int]:
    """Kafka timestamp (ms) of the first record at or after ``starts[p]`` (before ``ends[p]``), per
    partition where one was read within ``timeout``."""
    wanted = {p: s for p, s in starts.items() if ends.get(p, 0) > s}
    if not wanted:
        return {}
    consumer = reading.assign_only_consumer(config)
    out: dict[int, int] = {}
    try:
        consumer.assign([TopicPartition(topic, p, max(s, 0)) for p, s in wanted.items()])
        deadline = time.monotonic() + timeout
        pending = set(wanted)
        while pending and time.monotonic() < deadline:
            for msg in consumer.consume(100, timeout=0.05):
                p = msg.partition() or 0
                if msg.error() is None and p in pending:
                    ts_type, ts = msg.timestamp()
                    if ts_type and ts > 0:
                        out[p] = ts
                    pending.discard(p)
                    consumer.pause([TopicPartition(topic, p)])
            # nothing but transaction markers (or compacted-away records) before the end
            for tp in consumer.position([TopicPartition(topic, q) for q in pending]):
                if 0 <= ends.get(tp.partition, 0) <= tp.offset:
                    pending.discard(tp.partition)
    except (KafkaException, TimeoutError) as e:
        raise kafka_failure(config, e, f"reading {topic}") from e
    finally:
        consumer.close()
    return out
