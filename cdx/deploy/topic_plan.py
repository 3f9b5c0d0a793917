"""Desired topics versus the cluster: a plan (create, change, add partitions, impossible, extra) and apply.

``make_plan`` only reads (Describe, DescribeConfigs). ``apply_plan`` is idempotent: applying the
plan of a cluster that already matches does nothing, and re-planning after an apply shows no drift
except the changes Kafka cannot make (fewer partitions, another replication factor), which are
reported with the manual path, and extra topics, which are deleted only with ``prune``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewPartitions, NewTopic

from cdx.deploy.catalog import DesiredTopic
from cdx.errors import FatalError
from cdx.kafka.admin import _settle, _wait_for_leaders, _with_logger
from cdx.kafka.topicstate import describe_topics, list_topic_names, settings_differ


@dataclass(frozen=True)
class TopicChange:
    """One step of a plan. ``action``: create, configure, add-partitions, impossible, extra."""

    action: str
    topic: str
    kind: str
    detail: str
    settings: Mapping[str, str] = field(default_factory=dict)
    partitions: int = 0


@dataclass(frozen=True)
class TopicPlan:
    changes: tuple[TopicChange, ...]
    desired: tuple[DesiredTopic, ...]

    @property
    def drift(self) -> bool:
        """True when the cluster differs from the topology in any way (plan exits 2)."""
        return bool(self.changes)

    def of(self, action: str) -> list[TopicChange]:
        return [c for c in self.changes if c.action == action]


def make_plan(config: Mapping[str, Any], desired: Sequence[DesiredTopic], prefix: str,
              timeout: float = 30.0) -> TopicPlan:
    """Compare ``desired`` with the cluster; topics under ``<prefix>.`` that are not desired are extra."""
    admin = AdminClient(_with_logger(config))
    found = describe_topics(admin, config, [d.name for d in desired], timeout)
    changes: list[TopicChange] = []
    for d in desired:
        state = found.get(d.name)
        if state is None:
            changes.append(TopicChange("create", d.name, d.kind, _describe_spec(d), dict(d.spec.configs),
                                       d.spec.partitions))
            continue
        changes += _differences(d, state.partitions, state.replication_factor, state.configs)
    wanted = {d.name for d in desired}
    for name in sorted(list_topic_names(admin, config, timeout)):
        if name.startswith(prefix + ".") and name not in wanted:
            changes.append(TopicChange("extra", name, "?", "not in the topology (deleted only with --prune)"))
    return TopicPlan(tuple(changes), tuple(desired))


def _describe_spec(d: DesiredTopic) -> str:
    settings = ", ".join(f"{k}={v}" for k, v in sorted(d.spec.configs.items()))
    return f"{d.spec.partitions} partitions, replication factor {d.spec.replication_factor}, {settings}"


def _differences(d: DesiredTopic, partitions: int, replicas: int, configs: Mapping[str, str]) -> list[TopicChange]:
    out = []
    spec = d.spec
    if partitions < spec.partitions:
        out.append(TopicChange("add-partitions", d.name, d.kind, f"partitions {partitions} -> {spec.partitions}"
                               " (keys move to other partitions: stop the router and sinks first)",
                               partitions=spec.partitions))
    elif partitions > spec.partitions:
        out.append(TopicChange("impossible", d.name, d.kind,
                               f"has {partitions} partitions, the topology says {spec.partitions}: Kafka cannot"
                               " remove partitions. Keep it (set kafka.default_partitions to"
                               f" {partitions}), or delete the topic and let it be rebuilt"
                               " (`cdx kafka apply --prune`, then a resync)"))
    if spec.replication_factor > 0 and replicas != spec.replication_factor:
        out.append(TopicChange("impossible", d.name, d.kind,
                               f"replication factor {replicas}, the topology says {spec.replication_factor}:"
                               " change it with kafka-reassign-partitions.sh --execute and a reassignment JSON"
                               f" listing {spec.replication_factor} brokers per partition"))
    differ = settings_differ(spec.configs, configs)
    if differ:
        detail = ", ".join(f"{k}: {have} -> {want}" for k, (have, want) in sorted(differ.items()))
        out.append(TopicChange("configure", d.name, d.kind, detail, {k: w for k, (_, w) in differ.items()}))
    return out


def apply_plan(config: Mapping[str, Any], plan: TopicPlan, prune: bool = False,
               timeout: float = 60.0) -> list[TopicChange]:
    """Make every change Kafka can make (creates, settings, partition increases; deletes with ``prune``);
    return the changes made. Idempotent; raises ``FatalError``/``RetriableError`` on the first failure."""
    admin = AdminClient(_with_logger(config))
    done: list[TopicChange] = []
    specs = {d.name: d.spec for d in plan.desired}
    creates = plan.of("create")
    if creates:
        new = [NewTopic(c.topic, num_partitions=specs[c.topic].partitions,
                        replication_factor=specs[c.topic].replication_factor, config=dict(specs[c.topic].configs))
               for c in creates]
        _settle_all(admin.create_topics(new, operation_timeout=timeout), timeout, "creating topic", ok_exists=True)
        _wait_for_leaders(admin, [c.topic for c in creates], timeout)
        done += creates
    for change in plan.of("configure"):
        entries = [ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in change.settings.items()]
        resource = ConfigResource(ConfigResource.Type.TOPIC, change.topic, incremental_configs=entries)
        _settle_all(admin.incremental_alter_configs([resource], request_timeout=timeout), timeout, "configuring topic")
        done.append(change)
    grow = plan.of("add-partitions")
    if grow:
        _settle_all(admin.create_partitions([NewPartitions(c.topic, c.partitions) for c in grow],
                                            operation_timeout=timeout), timeout, "adding partitions to")
        done += grow
    if prune and plan.of("extra"):
        _settle_all(admin.delete_topics([c.topic for c in plan.of("extra")], operation_timeout=timeout), timeout,
                    "deleting topic")
        done += plan.of("extra")
    return done


def _settle_all(futures: Mapping[Any, Any], timeout: float, what: str, ok_exists: bool = False) -> None:
    for key, future in futures.items():
        name = getattr(key, "name", key)
        try:
            _settle(future, timeout, f"{what} {name}")
        except FatalError as exc:  # a concurrent apply created it first: fine
            if not (ok_exists and "TOPIC_ALREADY_EXISTS" in str(exc)):
                raise
