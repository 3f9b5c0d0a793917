"""Every topic a topology needs, with the settings chosen per kind of topic.

=============  ==========================  ============  =========================================
kind           topics                      partitions    settings
=============  ==========================  ============  =========================================
table          one per HQ download table   default       compact, max.message.bytes
group          one per channel data group  default       compact, max.message.bytes
upload         one per uploading channel   default       delete, retention 7 days, max.message.bytes
state          schemas, positions, router  1             compact (must never lose the latest value)
               state/keys/progress, acks,
               leases (``--ha``), topology
               revisions, roles
dead-letter    ``<prefix>._dlq``           1             retention forever (an operator clears it)
=============  ==========================  ============  =========================================

Every topic gets the topology's replication factor and ``min.insync.replicas`` of
``replication_factor - 1`` capped at 2 (at least 1): with 3 replicas a write survives one broker down.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from cdx import topics
from cdx.kafka.admin import TopicSpec
from cdx.topology.model import Direction
from cdx.topology.root import Topology

UPLOAD_RETENTION_MS = 7 * 24 * 3600 * 1000


@dataclass(frozen=True)
class DesiredTopic:
    """A topic of the catalog: its kind (table, group, upload, state, dead-letter) and its spec."""

    kind: str
    spec: TopicSpec

    @property
    def name(self) -> str:
        return self.spec.name


def min_insync_replicas(replication_factor: int) -> int:
    """``replication_factor - 1`` capped at 2, at least 1."""
    return max(1, min(2, replication_factor - 1))


def uploading_channel_ids(topology: Topology) -> list[str]:
    """Channels with at least one upload subjob in their group (they get an upload topic)."""
    return [info.channel.id for info in topology.channels()
            if topology.subjobs_for_group(info.group.id, Direction.UPLOAD)]


def desired_topics(topology: Topology) -> list[DesiredTopic]:
    """The catalog, sorted by name; idempotent (the same topology gives the same list)."""
    return sorted({d.name: d for d in _all(topology)}.values(), key=lambda d: d.name)


def _all(topology: Topology) -> Iterator[DesiredTopic]:
    k = topology.kafka
    prefix = k.topic_prefix
    common = {"min.insync.replicas": str(min_insync_replicas(k.replication_factor))}
    size = {"max.message.bytes": str(k.max_message_bytes)}
    compact = {**common, "cleanup.policy": "compact"}

    def spec(name: str, partitions: int, configs: dict[str, str]) -> TopicSpec:
        return TopicSpec(name, partitions, k.replication_factor, configs)

    for subjob in topology.download_subjobs():
        yield DesiredTopic("table", spec(topology.hq_table_topic(subjob), k.default_partitions, {**compact, **size}))
    for group in topology.channel_data_groups:
        yield DesiredTopic("group", spec(topology.group_topic(group.id), k.default_partitions, {**compact, **size}))
    upload = {**common, **size, "cleanup.policy": "delete", "retention.ms": str(UPLOAD_RETENTION_MS)}
    for channel_id in uploading_channel_ids(topology):
        yield DesiredTopic("upload", spec(topology.upload_topic(channel_id), k.default_partitions, upload))
    for name_of in (topics.schemas_topic, topics.positions_topic, topics.upload_positions_topic,
                    topics.dlq_acks_topic, topics.router_state_topic, topics.router_keys_topic,
                    topics.router_progress_topic, topics.lease_topic, topics.topology_topic,
                    topics.topology_roles_topic):
        yield DesiredTopic("state", spec(name_of(prefix), 1, compact))
    yield DesiredTopic("dead-letter", spec(topics.dlq_topic(prefix), 1, {**common, "retention.ms": "-1"}))
