"""``cdx route replay``: route one table topic's records again, from an offset or a time, into the groups.

Contract
- The router keeps its progress as the committed offsets of its consumer group ``<prefix>-router`` (written
  in each routing transaction, ``cdx.streams.engine``). A replay moves those offsets of the table topic back
  (never forward; a partition never routed is left alone: it starts at the beginning anyway) with
  ``AdminClient.alter_consumer_group_offsets``; the router routes from there when it next runs, through
  its ordinary path: key state, row filters, transactions.
- It refuses while a router worker runs (the group has members): a running worker would overwrite the
  offsets with its own. A worker stopped with ``--instance-id`` stays a member for its session timeout.
- **Idempotent**: routing the same records again re-sends changes whose source positions the sinks have
  applied (their watermarks cover them: skipped as duplicates), in source order, so each group topic ends
  with every key's latest change again and the key state with the groups that hold it now. Twice in a
  row equals once, which equals not replaying.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from cdx.errors import ConfigError, FatalError, RetriableError
from cdx.kafka.rewind import group_members, replay_targets
from cdx.streams.router import group_id
from cdx.topology import Topology
from cdx.topology.model import Subjob

log = logging.getLogger("cdx.router")


@dataclass
class RouteReplay:
    topic: str
    group: str
    ends: dict[int, int]
    moved: dict[int, tuple[int, int]] = field(default_factory=dict)
    """partition -> (committed offset before, offset now)."""


def download_subjob(topology: Topology, table: str) -> Subjob:
    """The download subjob of an HQ table (``dbo.INVENTTABLE``, ``INVENTTABLE``) or a subjob id; ``ConfigError``."""
    known = ", ".join(str(s.hq_table) for s in topology.download_subjobs()) or "none"
    try:
        subjob = topology.subjob(table) or topology.subjob_for_hq_table(table)
    except ValueError as exc:  # not a table name at all: empty, 'a.b.c', quotes
        raise ConfigError(f"--table {table!r}: {exc}; known HQ tables: {known}") from None
    if subjob is None or subjob.is_upload:
        raise ConfigError(f"no download subjob for table {table!r} in the topology; known HQ tables: {known}")
    return subjob


def replay_route(topology: Topology, table: str, *, from_offset: int | None = None,
                 from_timestamp_ms: int | None = None, partitions: Iterable[int] | None = None,
                 wait: float = 0.0) -> RouteReplay:
    """Rewind the router's offsets of ``table``'s topic (see module docstring)."""
    topic = topology.hq_table_topic(download_subjob(topology, table))
    config = topology.kafka.client_config()
    group = group_id(topology)
    members = group_members(config, group, wait)
    if members:
        raise FatalError(f"the router is running (consumer group {group}: {', '.join(members)}); stop every"
                         " router worker first (a worker with --instance-id stays a member for its session"
                         " timeout: pass --wait to wait for it)")
    targets, ends = replay_targets(config, topic, from_offset=from_offset, from_timestamp_ms=from_timestamp_ms,
                                   partitions=partitions)
    result = RouteReplay(topic, group, ends)
    admin = AdminClient(dict(config))
    try:
        request = [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in sorted(targets)])]
        committed = admin.list_consumer_group_offsets(request)[group].result(30)
        for tp in committed.topic_partitions or ():
            if tp.offset >= 0 and targets[tp.partition] < tp.offset:
                result.moved[tp.partition] = (tp.offset, targets[tp.partition])
        if result.moved:
            parts = [TopicPartition(topic, p, new) for p, (_, new) in sorted(result.moved.items())]
            admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(group, parts)])[group].result(30)
    except (KafkaException, TimeoutError) as e:
        raise RetriableError(f"cannot move the offsets of consumer group {group}: {e}") from e
    if result.moved:
        log.info("route replay: %s rewound %s", topic, result.moved)
    return result
