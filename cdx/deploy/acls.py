"""The ACLs each principal of ``kafka.principals`` needs, derived from the topology; plan and apply.

=============  ===========================================================================
principal      grants (ALLOW; LITERAL names unless marked prefix)
=============  ===========================================================================
capture        Write table topics; Read+Write schemas, capture positions, dead letters;
               TransactionalId ``<prefix>-capture-<hq>``; Read ``<prefix>._leases``, Group
               ``<prefix>-lease-capture-<hq>`` (``--ha``)
router         Read table topics; Write group topics; Read+Write schemas, router state
               topics, dead letters; Group ``<prefix>-router``; TransactionalId prefix
               ``<prefix>-router``
channel X      Read its group topic and schemas; Write dead letters; Group ``<prefix>-sink-X``;
               Describe Group ``<prefix>-sink-host`` (the sink's shared feed, assign-only);
               with uploads: Write ``<prefix>.upload.X``, Read+Write upload positions,
               schemas, TransactionalId ``<prefix>-upload-X``; Read ``<prefix>._leases``,
               Group ``<prefix>-lease-upload-X`` (``--ha``)
upload sink    Read upload topics and schemas; Write dead letters; Group ``<prefix>-hq-upload``
every one      Read ``<prefix>._topology`` (revisions); Write ``<prefix>._topology_roles``
=============  ===========================================================================

Every principal may also Describe the groups ``cdx-reader-*`` and ``cdx-schema-store-*`` (prefix) of
cdx's assign-only readers. Every topic grant also gives Describe (implied by Read/Write in Kafka) and
DescribeConfigs (a role started with ``kafka.manage_topics: false`` checks its topics' settings; a sink
reads its group topic's ``delete.retention.ms``). Channel names are exact (LITERAL): a prefix grant for
``store-1`` would also match ``store-10``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)

from cdx import topics
from cdx.deploy.catalog import uploading_channel_ids
from cdx.errors import ConfigError
from cdx.kafka.admin import _settle, _with_logger
from cdx.kafka.lease import lease_group
from cdx.topology.root import Topology

READ, WRITE, DESCRIBE_CONFIGS = AclOperation.READ, AclOperation.WRITE, AclOperation.DESCRIBE_CONFIGS
TOPIC, GROUP, TXN = ResourceType.TOPIC, ResourceType.GROUP, ResourceType.TRANSACTIONAL_ID
LITERAL, PREFIXED = ResourcePatternType.LITERAL, ResourcePatternType.PREFIXED
READER_GROUPS = ("cdx-reader-", "cdx-schema-store-")
"""Group-id prefixes of cdx's assign-only consumers (they never join or commit; librdkafka still asks for
their coordinator, which needs Describe on the group)."""


def sink_feed_group(prefix: str) -> str:
    """The group id of a sink process's shared feeds (``cdx.connectors.sink.host``): assign-only, it never
    joins or commits, but librdkafka looks up its coordinator (Describe)."""
    return f"{prefix}-sink-host"


@dataclass(frozen=True, order=True)
class Grant:
    """One ALLOW ACL: ``principal`` may do ``operation`` on the resource."""

    principal: str
    resource: str  # TOPIC, GROUP, TRANSACTIONAL_ID
    name: str
    pattern: str  # LITERAL, PREFIXED
    operation: str

    def binding(self) -> AclBinding:
        return AclBinding(ResourceType[self.resource], self.name, ResourcePatternType[self.pattern],
                          self.principal, "*", AclOperation[self.operation], AclPermissionType.ALLOW)

    def __str__(self) -> str:
        pattern = " (prefix)" if self.pattern == "PREFIXED" else ""
        return f"{self.principal} {self.operation} {self.resource} {self.name}{pattern}"


def _grants(principal: str, resource: ResourceType, names: Sequence[str], ops: Sequence[AclOperation],
            pattern: ResourcePatternType = LITERAL) -> Iterator[Grant]:
    for name in names:
        for op in ops:
            yield Grant(principal, resource.name, name, pattern.name, op.name)


def desired_acls(topology: Topology) -> list[Grant]:
    """Every grant the topology's principals need, sorted; empty without ``kafka.principals``."""
    p = topology.kafka.principals
    if p is None:
        return []
    prefix = topology.kafka.topic_prefix
    tables = sorted({topology.hq_table_topic(s) for s in topology.download_subjobs()})
    schemas, dlq = topics.schemas_topic(prefix), topics.dlq_topic(prefix)
    out: list[Grant] = []
    if p.capture is not None:
        who = p.capture.principal
        out += _grants(who, TOPIC, tables, [WRITE])
        out += _grants(who, TOPIC, [schemas, topics.positions_topic(prefix), dlq], [READ, WRITE])
        out += _grants(who, TXN, [f"{prefix}-capture-{topology.hq.name}"], [WRITE])
        out += _grants(who, TOPIC, [topics.lease_topic(prefix)], [READ])
        out += _grants(who, GROUP, [lease_group(prefix, "capture", topology.hq.name)], [READ])
    if p.router is not None:
        who = p.router.principal
        state = [topics.router_state_topic(prefix), topics.router_keys_topic(prefix),
                 topics.router_progress_topic(prefix), schemas, dlq]
        out += _grants(who, TOPIC, tables, [READ])
        out += _grants(who, TOPIC, [topology.group_topic(g.id) for g in topology.channel_data_groups], [WRITE])
        out += _grants(who, TOPIC, state, [READ, WRITE])
        out += _grants(who, GROUP, [f"{prefix}-router"], [READ])
        out += _grants(who, TXN, [f"{prefix}-router"], [WRITE], PREFIXED)
    uploading = uploading_channel_ids(topology)
    if p.upload_sink is not None:
        who = p.upload_sink.principal
        out += _grants(who, TOPIC, [topology.upload_topic(c) for c in uploading] + [schemas], [READ])
        out += _grants(who, TOPIC, [dlq], [READ, WRITE])
        out += _grants(who, GROUP, [f"{prefix}-hq-upload"], [READ])
    out += _channel_grants(topology, uploading)
    out += _control_grants(topology)
    out += [Grant(g.principal, g.resource, g.name, g.pattern, DESCRIBE_CONFIGS.name)
            for g in out if g.resource == "TOPIC"]
    for who in {g.principal for g in out}:  # assign-only readers (schemas, watermarks) look up their coordinator
        out += _grants(who, GROUP, READER_GROUPS, [AclOperation.DESCRIBE], PREFIXED)
    return sorted(set(out))


def _control_grants(topology: Topology) -> Iterator[Grant]:
    """Every principal reads the published topology revisions and reports the revision it runs."""
    p = topology.kafka.principals
    assert p is not None
    prefix = topology.kafka.topic_prefix
    for identity in p.identities():
        yield from _grants(identity.principal, TOPIC, [topics.topology_topic(prefix)], [READ])
        yield from _grants(identity.principal, TOPIC, [topics.topology_roles_topic(prefix)], [WRITE])


def _channel_grants(topology: Topology, uploading: list[str]) -> Iterator[Grant]:
    p = topology.kafka.principals
    assert p is not None
    prefix = topology.kafka.topic_prefix
    owners = {d.owner_id.casefold(): d for d in topology.databases()}
    for owner_id, identity in sorted(p.channels.items()):
        db = owners.get(owner_id.casefold())
        if db is None:
            raise ConfigError(f"kafka.principals.channels.{owner_id}: no channel or offline register has this id;"
                              f" known: {', '.join(sorted(d.owner_id for d in owners.values()))}")
        who = identity.principal
        yield from _grants(who, TOPIC, [topology.group_topic(db.group.id), topics.schemas_topic(prefix)], [READ])
        yield from _grants(who, TOPIC, [topics.dlq_topic(prefix)], [WRITE])
        yield from _grants(who, GROUP, [f"{prefix}-sink-{db.owner_id}"], [READ])
        yield from _grants(who, GROUP, [sink_feed_group(prefix)], [AclOperation.DESCRIBE])
        if db.kind == "channel" and db.owner_id in uploading:
            yield from _grants(who, TOPIC, [topology.upload_topic(db.owner_id)], [WRITE])
            yield from _grants(who, TOPIC, [topics.upload_positions_topic(prefix), topics.schemas_topic(prefix)],
                               [READ, WRITE])
            yield from _grants(who, TXN, [f"{prefix}-upload-{db.owner_id}"], [WRITE])
            yield from _grants(who, TOPIC, [topics.lease_topic(prefix)], [READ])
            yield from _grants(who, GROUP, [lease_group(prefix, "upload", db.owner_id)], [READ])


@dataclass(frozen=True)
class AclPlan:
    missing: tuple[Grant, ...]
    extra: tuple[Grant, ...]

    @property
    def drift(self) -> bool:
        return bool(self.missing or self.extra)


def plan_acls(config: Mapping[str, Any], topology: Topology, timeout: float = 30.0) -> AclPlan:
    """Grants to create, and grants of the topology's principals on ``<prefix>.``/``<prefix>-`` resources the
    topology does not need (grants on other resources belong to someone else and are left alone)."""
    desired = set(desired_acls(topology))
    p = topology.kafka.principals
    if p is None:
        return AclPlan((), ())
    principals = {i.principal for i in p.identities()}
    prefix = topology.kafka.topic_prefix
    have = {g for g in existing_acls(config, principals, timeout)
            if g.name.startswith((prefix + ".", prefix + "-")) or g in desired}
    return AclPlan(tuple(sorted(desired - have)), tuple(sorted(have - desired)))


def existing_acls(config: Mapping[str, Any], principals: set[str], timeout: float = 30.0) -> set[Grant]:
    """The ALLOW ACLs the cluster holds for ``principals`` (needs Describe on the cluster)."""
    admin = AdminClient(_with_logger(config))
    anything: Any = None  # matches any name, principal and host
    any_filter = AclBindingFilter(ResourceType.ANY, anything, ResourcePatternType.ANY, anything, anything,
                                  AclOperation.ANY, AclPermissionType.ALLOW)
    bindings = _settle(admin.describe_acls(any_filter, request_timeout=timeout), timeout, "listing ACLs")
    return {Grant(b.principal, b.restype.name, b.name, b.resource_pattern_type.name, b.operation.name)
            for b in bindings if b.principal in principals}


def create_acls(config: Mapping[str, Any], grants: Sequence[Grant], timeout: float = 30.0) -> None:
    """Create ``grants`` (idempotent: Kafka ignores an ACL that exists)."""
    if not grants:
        return
    admin = AdminClient(_with_logger(config))
    for binding, future in admin.create_acls([g.binding() for g in grants], request_timeout=timeout).items():
        _settle(future, timeout, f"creating ACL {binding}")


def delete_acls(config: Mapping[str, Any], grants: Sequence[Grant], timeout: float = 30.0) -> None:
    """Delete exactly ``grants``."""
    if not grants:
        return
    admin = AdminClient(_with_logger(config))
    filters = [AclBindingFilter(ResourceType[g.resource], g.name, ResourcePatternType[g.pattern], g.principal, "*",
                                AclOperation[g.operation], AclPermissionType.ALLOW) for g in grants]
    for binding, future in admin.delete_acls(filters, request_timeout=timeout).items():
        _settle(future, timeout, f"deleting ACL {binding}")
