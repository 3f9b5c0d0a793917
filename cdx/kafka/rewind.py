"""Where a replay starts: per-partition offsets from an offset or a time, and who still consumes a group
(the membership of consumer groups, also for ``cdx status``).

Shared by the replay commands of every hop (``cdx route replay``, ``cdx hq upload-sink replay``); each
stores the result where its own role keeps its progress and never moves a position forward.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaException, TopicPartition

from cdx.errors import ConfigError, RetriableError
from cdx.kafka.admin import partitions_of
from cdx.kafka.lingering import admin_client
from cdx.kafka.reach import kafka_failure
from cdx.kafka.reading import assign_only_consumer, partition_watermarks


def replay_targets(config: Mapping[str, Any], topic: str, *, from_offset: int | None = None,
                   from_timestamp_ms: int | None = None, partitions: Iterable[int] | None = None,
                   timeout: float = 10.0) -> tuple[dict[int, int], dict[int, int]]:
    """``(targets, ends)``: per partition (all, or ``partitions``) the offset to replay from, clamped to
    the log (``from_offset``, or the first record at or after ``from_timestamp_ms``), and the end offsets.
    ``ConfigError`` for a missing topic, an unknown partition or not exactly one start."""
    if (from_offset is None) == (from_timestamp_ms is None):
        raise ConfigError("give exactly one of --from-offset, --from-timestamp")
    if from_offset is not None and from_offset < 0:
        raise ConfigError(f"--from-offset {from_offset}: must be 0 or more")
    try:
        parts = partitions_of(config, topic, timeout)
    except KafkaException as e:
        raise RetriableError(f"cannot read the partitions of {topic}: {e}") from e
    if not parts:
        raise ConfigError(f"topic {topic} does not exist (nothing to replay)")
    only = set(partitions or ())
    if only - set(parts):
        raise ConfigError(f"{topic} has no partition {sorted(only - set(parts))}; it has {sorted(parts)}")
    chosen = sorted(only or parts)
    consumer = assign_only_consumer(config)
    try:
        marks = {p: partition_watermarks(consumer, topic, p, timeout) for p in chosen}
        if from_offset is not None:
            wanted = {p: from_offset for p in chosen}
        else:
            found = consumer.offsets_for_times([TopicPartition(topic, p, from_timestamp_ms or 0) for p in chosen],
                                               timeout=timeout)
            wanted = {tp.partition: tp.offset if tp.offset >= 0 else marks[tp.partition][1] for tp in found}
    except (KafkaException, TimeoutError) as e:
        raise RetriableError(f"cannot read the offsets of {topic}: {e}") from e
    finally:
        consumer.close()
    targets = {p: min(max(o, marks[p][0]), marks[p][1]) for p, o in wanted.items()}
    return targets, {p: marks[p][1] for p in chosen}


@dataclass(frozen=True)
class GroupInfo:
    state: str
    members: tuple[str, ...]
    """One ``client_id@host`` (static members: ``instance id@host``) per member."""

    @property
    def active(self) -> bool:
        return bool(self.members)


def describe_groups(config: Mapping[str, Any], groups: Iterable[str], timeout: float = 10.0) -> dict[str, GroupInfo]:
    """Membership of consumer groups (``AdminClient.describe_consumer_groups``).

    A static member (channel sinks before the shared feed used ``group.instance.id``) stays listed after its process
    ended until ``session.timeout.ms`` passed (10 s for the sinks).
    """
    names = sorted(set(groups))
    if not names:
        return {}
    out = {}
    try:
        with admin_client(config) as admin:
            futures = admin.describe_consumer_groups(names, request_timeout=timeout)
            for name, future in futures.items():
                desc = future.result(timeout)
                members = tuple(f"{m.group_instance_id or m.client_id}@{m.host}" for m in desc.members or ())
                out[name] = GroupInfo(str(getattr(desc.state, "name", desc.state)).lower(), members)
    except (KafkaException, TimeoutError) as e:
        raise kafka_failure(config, e, "consumer groups") from e
    return out


def group_members(config: Mapping[str, Any], group: str, wait: float = 0.0, timeout: float = 10.0) -> list[str]:
    """The members of consumer group ``group`` (after waiting up to ``wait`` s for it to empty)."""
    deadline = time.monotonic() + wait
    while True:
        members = list(describe_groups(config, [group], timeout)[group].members)
        if not members or time.monotonic() >= deadline:
            return members
        time.sleep(1.0)
