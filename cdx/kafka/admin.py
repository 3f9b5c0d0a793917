"""Topic creation (idempotent) and topic inspection."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from cdx.errors import FatalError, RetriableError
from cdx.kafka.config import LIBRDKAFKA_LOGGER
from cdx.kafka.reach import kafka_failure
from cdx.kafka.topicstate import describe_topics, settings_differ


@dataclass(frozen=True)
class TopicSpec:
    """A topic cdx needs. ``replication_factor=-1`` takes the broker default."""

    name: str
    partitions: int = 1
    replication_factor: int = -1
    configs: Mapping[str, str] = field(default_factory=dict)


COMPACTED = {"cleanup.policy": "compact"}


_TRANSIENT = (KafkaError.REQUEST_TIMED_OUT, KafkaError._TIMED_OUT, KafkaError._TRANSPORT, KafkaError.NOT_CONTROLLER,
              KafkaError._ALL_BROKERS_DOWN)


def _with_logger(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` with librdkafka's log lines going to Python logging (not raw to stderr)."""
    return {"logger": LIBRDKAFKA_LOGGER, **config}


_POLICY = {"manage_topics": True}


def set_topic_management(manage: bool) -> None:
    """Process-wide: whether :func:`ensure_topics` creates missing topics (``True``, the default) or only
    verifies them (``kafka.manage_topics: false``; topics then come from ``cdx kafka apply``).
    ``cdx.topology.load_topology`` sets it from the topology each role loads."""
    _POLICY["manage_topics"] = bool(manage)


def topic_management() -> bool:
    """The setting :func:`set_topic_management` made (``True`` unless a topology turned it off)."""
    return _POLICY["manage_topics"]


def ensure_topics(config: Mapping[str, Any], specs: Iterable[TopicSpec], timeout: float = 30.0) -> list[str]:
    """Create the topics that do not exist yet; return the names created.

    Idempotent. An existing topic is left as it is (its partition count is never changed,
    since that would move keys between partitions). With topic management off
    (:func:`set_topic_management`) nothing is created: :func:`verify_topics` checks them instead.
    """
    specs = list(specs)
    if not specs:
        return []
    if not topic_management():
        verify_topics(config, specs, timeout)
        return []
    admin = AdminClient(_with_logger(config))
    try:
        existing = set(admin.list_topics(timeout=timeout).topics)
    except KafkaException as exc:
        raise kafka_failure(config, exc, "listing topics") from exc
    wanted = [s for s in specs if s.name not in existing]
    if not wanted:
        return []
    futures = admin.create_topics(
        [NewTopic(s.name, num_partitions=s.partitions, replication_factor=s.replication_factor,
                  config=dict(s.configs)) for s in wanted],
        operation_timeout=timeout,
    )
    created = []
    for name, future in futures.items():
        try:
            future.result(timeout)
            created.append(name)
        except KafkaException as exc:
            err = exc.args[0]
            if isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            if isinstance(err, KafkaError) and (err.retriable() or err.code() in _TRANSIENT):
                raise RetriableError(f"creating topic {name} did not finish: {err}") from exc
            raise FatalError(f"cannot create topic {name}: {err}") from exc
    _wait_for_leaders(admin, [s.name for s in wanted], timeout)
    return created


def verify_topics(config: Mapping[str, Any], specs: Iterable[TopicSpec], timeout: float = 30.0) -> None:
    """``FatalError`` naming every topic of ``specs`` that is missing, has fewer partitions, another
    replication factor or other settings than the spec, and the fix (``cdx kafka apply``). Read-only."""
    specs = list(specs)
    admin = AdminClient(_with_logger(config))
    found = describe_topics(admin, config, [s.name for s in specs], timeout)
    problems = []
    for spec in specs:
        state = found.get(spec.name)
        if state is None:
            problems.append(f"{spec.name} does not exist")
            continue
        if state.partitions < spec.partitions:
            problems.append(f"{spec.name} has {state.partitions} partitions, {spec.partitions} expected")
        if spec.replication_factor > 0 and state.replication_factor != spec.replication_factor:
            problems.append(f"{spec.name} has replication factor {state.replication_factor},"
                            f" {spec.replication_factor} expected")
        for key, (have, want) in settings_differ(spec.configs, state.configs).items():
            problems.append(f"{spec.name} has {key}={have}, {want} expected")
    if problems:
        raise FatalError("kafka.manage_topics is false, so cdx does not create or change topics, and "
                         + "; ".join(problems) + ": run `cdx kafka apply` with the topology"
                         " (as a principal allowed to create topics), then start this again")


def _wait_for_leaders(admin: AdminClient, names: list[str], timeout: float) -> None:
    """Block until every partition of ``names`` has a leader (new topics are usable then)."""
    deadline = time.monotonic() + timeout
    pending = set(names)
    while pending and time.monotonic() < deadline:
        md = admin.list_topics(timeout=timeout)
        for name in list(pending):
            meta = md.topics.get(name)
            if meta is not None and meta.error is None and meta.partitions and all(
                    p.leader >= 0 for p in meta.partitions.values()):
                pending.discard(name)
        if pending:
            time.sleep(0.1)
    if pending:
        raise RetriableError(f"topics {sorted(pending)} have no leader after {timeout:.0f}s")


def partitions_of(config: Mapping[str, Any], topic: str, timeout: float = 10.0) -> list[int]:
    """Partition ids of ``topic`` (empty when the topic does not exist)."""
    admin = AdminClient(_with_logger(config))
    try:
        md = admin.list_topics(topic, timeout=timeout)
    except KafkaException as exc:
        raise kafka_failure(config, exc, f"reading the metadata of {topic}") from exc
    meta = md.topics.get(topic)
    if meta is None or meta.error is not None:
        return []
    return sorted(meta.partitions)


def max_message_config(max_message_bytes: int) -> dict[str, str]:
    """Topic settings that let records of up to ``max_message_bytes`` in (``max.message.bytes``)."""
    return {"max.message.bytes": str(int(max_message_bytes))}


def raise_max_message_bytes(config: Mapping[str, Any], names: Iterable[str], limit: int, log: logging.Logger,
                            timeout: float = 30.0) -> None:
    """Raise ``max.message.bytes`` of existing topics to ``limit`` (``kafka.max_message_bytes``) where it
    is lower (idempotent).

    ``ensure_topics`` only applies settings when it creates a topic: this brings topics created
    earlier (or by an older release) in line. A topic whose setting could not be changed for lack of
    rights gets a warning on the caller's ``log``: an administrator must raise it."""
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource

    names = list(names)
    if not names or not topic_management():  # kafka.manage_topics false: `cdx kafka apply` owns the settings
        return
    admin = AdminClient(dict(config))
    low = []
    described = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, n) for n in names],
                                       request_timeout=timeout)
    for resource, future in described.items():
        entry = _settle(future, timeout, f"reading the settings of topic {resource.name}").get("max.message.bytes")
        if entry is None or int(entry.value) < limit:
            low.append(resource.name)
    if not low:
        return
    setting = [ConfigEntry("max.message.bytes", str(int(limit)), incremental_operation=AlterConfigOpType.SET)]
    resources = [ConfigResource(ConfigResource.Type.TOPIC, n, incremental_configs=setting) for n in low]
    for resource, future in admin.incremental_alter_configs(resources, request_timeout=timeout).items():
        try:
            _settle(future, timeout, f"setting max.message.bytes={limit} on topic {resource.name}")
        except FatalError as exc:
            if "AUTHORIZATION" not in str(exc).upper() and "POLICY" not in str(exc).upper():
                raise
            log.warning("cannot raise max.message.bytes of %s to kafka.max_message_bytes (%d): no right to alter"
                        " it; an administrator must, or larger rows will fail", resource.name, limit)


def _settle(future: Any, timeout: float, what: str) -> Any:
    try:
        return future.result(timeout)
    except KafkaException as exc:
        err = exc.args[0]
        if isinstance(err, KafkaError) and (err.retriable() or err.code() in _TRANSIENT):
            raise RetriableError(f"{what} did not finish: {err}") from exc
        raise FatalError(f"{what}: {err}") from exc
