"""Precomputed lookups over a validated :class:`~cdx.topology.root.Topology` (see ``Topology.index``).

The index assumes the topology passed validation (ids unique, references resolved).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol

from cdx import topics
from cdx.topology.identifiers import TableRef
from cdx.topology.model import (
    Channel,
    ChannelDataGroup,
    Database,
    Dialect,
    Direction,
    DistributionSchedule,
    HqDatabase,
    Job,
    KafkaConfig,
    Subjob,
)


class TopologyParts(Protocol):
    """What the index reads of a topology (:class:`cdx.topology.root.Topology` has it)."""

    @property
    def kafka(self) -> KafkaConfig: ...
    @property
    def hq(self) -> HqDatabase: ...
    @property
    def jobs(self) -> tuple[Job, ...]: ...
    @property
    def subjobs(self) -> tuple[Subjob, ...]: ...
    @property
    def channel_data_groups(self) -> tuple[ChannelDataGroup, ...]: ...
    @property
    def distribution_schedules(self) -> tuple[DistributionSchedule, ...]: ...


class ChannelInfo(NamedTuple):
    """A channel and the group it belongs to."""

    channel: Channel
    group: ChannelDataGroup


class DatabaseInfo(NamedTuple):
    """A channel or offline-register database.

    ``owner_id`` is the channel id (``kind == "channel"``) or the register id (``"offline"``);
    ``channel`` is the channel whose data it receives (a register's own channel).
    """

    owner_id: str
    kind: str
    database: Database
    channel: Channel
    group: ChannelDataGroup


def hq_table_key(table: TableRef, dialect: Dialect) -> tuple[str, str]:
    """Case-insensitive identity of an HQ table; SQLite has no schemas, so only the name counts."""
    if dialect is Dialect.SQLITE:
        return ("", table.name.casefold())
    return table.key(dialect.default_schema)


class TopologyIndex:
    """Dictionaries keyed by case-folded ids, built once per topology."""

    def __init__(self, topo: TopologyParts) -> None:
        self.topo = topo
        self.jobs: dict[str, Job] = {j.id.casefold(): j for j in topo.jobs}
        self.subjobs: dict[str, Subjob] = {s.id.casefold(): s for s in topo.subjobs}
        self.groups: dict[str, ChannelDataGroup] = {g.id.casefold(): g for g in topo.channel_data_groups}
        self.channels: dict[str, ChannelInfo] = {}
        self.registers: dict[str, ChannelInfo] = {}
        self.databases: list[DatabaseInfo] = []
        for group in topo.channel_data_groups:
            for channel in group.channels:
                info = ChannelInfo(channel, group)
                self.channels[channel.id.casefold()] = info
                self.databases.append(DatabaseInfo(channel.id, "channel", channel.database, channel, group))
                for reg in channel.offline_registers:
                    self.registers[reg.id.casefold()] = info
                    self.databases.append(DatabaseInfo(reg.id, "offline", reg.database, channel, group))
        self.by_hq_table: dict[tuple[str, str], Subjob] = {
            hq_table_key(s.hq_table, topo.hq.dialect): s for s in topo.subjobs
        }
        self._groups_for: dict[str, tuple[ChannelDataGroup, ...]] = {}
        for s in topo.subjobs:
            self._groups_for[s.id.casefold()] = self._compute_groups(s)

    def _subjob(self, subjob: Subjob | str) -> Subjob:
        found = self.subjobs.get((subjob if isinstance(subjob, str) else subjob.id).casefold())
        if found is None:
            raise KeyError(f"no subjob {subjob if isinstance(subjob, str) else subjob.id!r} in the topology")
        return found

    def _compute_groups(self, subjob: Subjob) -> tuple[ChannelDataGroup, ...]:
        jobs = {j.casefold() for j in subjob.scheduled_by}
        wanted: set[str] = set()
        for sched in self.topo.distribution_schedules:
            if sched.direction is subjob.direction and jobs & {j.casefold() for j in sched.jobs}:
                wanted.update(g.casefold() for g in sched.channel_data_groups)
        return tuple(g for g in self.topo.channel_data_groups if g.id.casefold() in wanted)

    def subjob_for_hq_table(self, table: TableRef | str) -> Subjob | None:
        ref = TableRef.parse(table) if isinstance(table, str) else table
        return self.by_hq_table.get(hq_table_key(ref, self.topo.hq.dialect))

    def jobs_of(self, subjob: Subjob | str) -> Sequence[Job]:
        return [self.jobs[j.casefold()] for j in self._subjob(subjob).scheduled_by]

    def groups_for_subjob(self, subjob: Subjob | str) -> Sequence[ChannelDataGroup]:
        return self._groups_for[self._subjob(subjob).id.casefold()]

    def subjobs_for_group(self, group_id: str, direction: Direction) -> Sequence[Subjob]:
        key = group_id.casefold()
        return [
            s for s in self.topo.subjobs
            if s.direction is direction and any(g.id.casefold() == key for g in self._groups_for[s.id.casefold()])
        ]

    def filter_value(self, subjob: Subjob, channel_id: str) -> str | None:
        if subjob.channel_filter is None:
            return None
        info = self.channels.get(channel_id.casefold()) or self.registers.get(channel_id.casefold())
        if info is None:
            raise KeyError(f"no channel or offline register {channel_id!r} in the topology")
        value = info.channel.attributes.get(subjob.channel_filter.attribute)
        if value is None:
            raise KeyError(f"channel {info.channel.id!r} has no attribute {subjob.channel_filter.attribute!r}")
        return str(value)

    def hq_table_topic(self, subjob: Subjob | str) -> str:
        s = self._subjob(subjob)
        if s.source_topic is not None:
            return s.source_topic
        schema = s.hq_table.schema or self.topo.hq.dialect.default_schema
        return topics.table_topic(self.topo.kafka.topic_prefix, self.topo.hq.name, schema, s.hq_table.name)

    def topics(self) -> list[str]:
        prefix = self.topo.kafka.topic_prefix
        names = {topics.schemas_topic(prefix), topics.positions_topic(prefix), topics.dlq_topic(prefix)}
        names.update(self.hq_table_topic(s) for s in self.topo.subjobs if s.direction is Direction.DOWNLOAD)
        names.update(topics.group_topic(prefix, g.id) for g in self.topo.channel_data_groups)
        if any(s.direction is Direction.UPLOAD for s in self.topo.subjobs):
            names.update(topics.upload_topic(prefix, c.channel.id) for c in self.channels.values())
        return sorted(names)
