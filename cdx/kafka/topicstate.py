"""What the cluster holds for a set of topics: partitions, replication factor, effective settings.

Read-only: ``describe_topics`` needs Describe and DescribeConfigs rights only. The settings are the
*effective* values (topic override or broker default), so a topic created without an explicit
``retention.ms`` still compares equal to a desired ``retention.ms`` that matches the broker default.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource

from cdx.errors import FatalError, RetriableError
from cdx.kafka.reach import kafka_failure


@dataclass(frozen=True)
class TopicState:
    """One existing topic as the cluster describes it."""

    name: str
    partitions: int
    replication_factor: int
    configs: Mapping[str, str] = field(default_factory=dict)


def list_topic_names(admin: AdminClient, config: Mapping[str, Any], timeout: float = 30.0) -> set[str]:
    """Every topic the principal may describe."""
    try:
        return set(admin.list_topics(timeout=timeout).topics)
    except KafkaException as exc:
        raise kafka_failure(config, exc, "listing topics") from exc


def describe_topics(admin: AdminClient, config: Mapping[str, Any], names: Iterable[str],
                    timeout: float = 30.0) -> dict[str, TopicState]:
    """The state of each topic of ``names`` that exists (missing ones are left out)."""
    wanted = sorted(set(names))
    if not wanted:
        return {}
    try:
        md = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise kafka_failure(config, exc, "reading topic metadata") from exc
    present = [n for n in wanted if n in md.topics and md.topics[n].error is None]
    settings = _effective_configs(admin, present, timeout)
    out = {}
    for name in present:
        parts = md.topics[name].partitions
        replicas = max((len(p.replicas) for p in parts.values()), default=0)
        out[name] = TopicState(name, len(parts), replicas, settings.get(name, {}))
    return out


def _effective_configs(admin: AdminClient, names: list[str], timeout: float) -> dict[str, dict[str, str]]:
    if not names:
        return {}
    futures = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, n) for n in names],
                                     request_timeout=timeout)
    out = {}
    for resource, future in futures.items():
        try:
            entries = future.result(timeout)
        except KafkaException as exc:
            err = exc.args[0]
            if isinstance(err, KafkaError) and err.retriable():
                raise RetriableError(f"reading the settings of topic {resource.name} did not finish: {err}") from exc
            raise FatalError(f"cannot read the settings of topic {resource.name}: {err}") from exc
        out[resource.name] = {key: entry.value for key, entry in entries.items() if entry.value is not None}
    return out


def settings_differ(desired: Mapping[str, str], actual: Mapping[str, str]) -> dict[str, tuple[str | None, str]]:
    """``{key: (actual, desired)}`` for every desired setting the topic does not have."""
    return {key: (actual.get(key), value) for key, value in desired.items()
            if _normal(key, actual.get(key)) != _normal(key, value)}


def _normal(key: str, value: str | None) -> str | None:
    if value is None:
        return None
    if key == "cleanup.policy":
        return ",".join(sorted(v.strip() for v in value.split(",")))
    return value.strip()
