"""What one channel sink needs to know from the topology (``SinkSpec``), built by ``sink_specs``.

A sink serves one database: a channel's, or an offline register's (which receives exactly what
its channel receives and filters with its channel's attributes). It reads its group's topic
``<prefix>.group.<group-id>`` in its own consumer group ``<prefix>-sink-<owner-id>``.

Parent-before-child order: the target tables of the group's download subjobs in topology
declaration order (each subjob's own table, then its extension table). The topology has no
foreign keys, so declaration order is the contract: declare parents before children. Tables a
record names that the topology does not list for the group come after all listed ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property

from cdx.errors import ConfigError
from cdx.topics import group_topic
from cdx.topology.model import Direction, DistributionSchedule, Subjob
from cdx.topology.operations import offline_excluded, schedules_for
from cdx.topology.root import Topology

Target = tuple[str, str]
"""``(schema, table)`` of a channel table, as routed records and the topology name it."""


def target_key(schema: str, table: str) -> tuple[str, str]:
    """Case-insensitive identity of a target table."""
    return schema.casefold(), table.casefold()


@dataclass(frozen=True)
class FilterRule:
    """Keep only rows whose channel ``column`` equals ``value`` (compared as strings)."""

    column: str
    value: str


@dataclass(frozen=True, eq=False)
class SinkSpec:
    """One sink: the database it writes, the topic it reads, its table order and row filters."""

    owner_id: str
    kind: str
    """``channel`` or ``offline`` (an offline register)."""
    channel_id: str
    group_id: str
    dialect: str
    dsn: str
    topic: str
    consumer_group: str
    table_order: tuple[Target, ...] = ()
    filters: Mapping[str, FilterRule] = field(default_factory=dict)
    """Row filter per subjob id (case-folded)."""
    subjob_jobs: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Job ids scheduling each subjob (subjob id case-folded), for the download-session history."""
    extension_schemas: tuple[str, ...] = ("ext",)
    """Schemas whose tables' columns are created NOT NULL with a DEFAULT (``extensions.schemas``)."""
    excluded_subjobs: frozenset[str] = frozenset()
    """Subjob ids (case-folded) this database does not take: ``offline: false`` on an offline register."""
    schedules: Mapping[str, tuple[DistributionSchedule, ...]] = field(default_factory=dict)
    """Per subjob id (case-folded): the schedules delivering it to this group, only for subjobs none of
    whose schedules is continuous (the others are applied as they arrive)."""

    @cached_property
    def _ranks(self) -> dict[tuple[str, str], int]:
        return {target_key(*t): i for i, t in enumerate(self.table_order)}

    def rank(self, schema: str, table: str) -> tuple[int, str, str]:
        """Sort key: parents (declared first) before children; undeclared tables last, by name."""
        key = target_key(schema, table)
        return self._ranks.get(key, len(self._ranks)), key[0], key[1]

    def filter_for(self, subjob: str) -> FilterRule | None:
        return self.filters.get(subjob.casefold())

    def excludes(self, subjob: str) -> bool:
        return subjob.casefold() in self.excluded_subjobs

    def jobs_for(self, subjob: str) -> tuple[str, ...]:
        return self.subjob_jobs.get(subjob.casefold(), ())

    def redacted_dsn(self) -> str:
        from cdx.topology.dsn import redact

        return redact(self.dsn)


def sink_group(prefix: str, owner_id: str) -> str:
    """The consumer group (and static member id) of one database's sink: ``<prefix>-sink-<owner>``."""
    return f"{prefix}-sink-{owner_id}"


def subjob_targets(subjob: Subjob) -> list[Target]:
    """The channel tables a download subjob fills: its own, then its extension's."""
    out = [(subjob.target.schema or "", subjob.target.name)]
    if subjob.extension is not None:
        ext = subjob.extension.target
        out.append((ext.schema or "", ext.name))
    return out


def _filter_rule(topology: Topology, subjob: Subjob, owner_id: str) -> FilterRule | None:
    flt = subjob.channel_filter
    if flt is None:
        return None
    value = topology.filter_value(subjob, owner_id)
    column = next((f.channel_name for f in subjob.all_fields() if f.name.casefold() == flt.column.casefold()),
                  flt.column)
    assert value is not None
    return FilterRule(column, value)


def sink_specs(topology: Topology, owner_ids: Iterable[str] | None = None) -> list[SinkSpec]:
    """The sinks of ``owner_ids`` (channel or offline-register ids; default: every database).

    Raises ``ConfigError`` naming any unknown id.
    """
    infos = topology.databases()
    if owner_ids:
        wanted = {i.casefold() for i in owner_ids}
        known = {d.owner_id.casefold() for d in infos}
        unknown = [i for i in owner_ids if i.casefold() not in known]
        if unknown:
            raise ConfigError(f"no channel or offline register {', '.join(map(repr, unknown))} in the topology;"
                              f" known: {', '.join(sorted(i.owner_id for i in infos)) or 'none'}")
        infos = [i for i in infos if i.owner_id.casefold() in wanted]
    prefix = topology.kafka.topic_prefix
    specs = []
    for info in infos:
        subjobs = topology.subjobs_for_group(info.group.id, Direction.DOWNLOAD)
        excluded = frozenset(s.id.casefold() for s in subjobs
                             if info.kind == "offline" and offline_excluded(topology, s))
        subjobs = [s for s in subjobs if s.id.casefold() not in excluded]
        order: list[Target] = []
        for s in subjobs:
            order += [t for t in subjob_targets(s) if t not in order]
        filters = {s.id.casefold(): rule for s in subjobs
                   if (rule := _filter_rule(topology, s, info.owner_id)) is not None}
        specs.append(SinkSpec(
            owner_id=info.owner_id, kind=info.kind, channel_id=info.channel.id, group_id=info.group.id,
            dialect=info.database.dialect.value, dsn=info.database.dsn, topic=group_topic(prefix, info.group.id),
            consumer_group=sink_group(prefix, info.owner_id), table_order=tuple(order), filters=filters,
            subjob_jobs={s.id.casefold(): tuple(j.id for j in topology.jobs_of(s)) for s in subjobs},
            extension_schemas=topology.extensions.schemas, excluded_subjobs=excluded,
            schedules=_windowed(topology, info.group.id, subjobs)))
    return specs


def _windowed(topology: Topology, group_id: str, subjobs: list[Subjob]) -> dict[str, tuple[DistributionSchedule, ...]]:
    out = {}
    for s in subjobs:
        scheds = tuple(schedules_for(topology, group_id, s))
        if scheds and not any(d.plan.continuous for d in scheds):
            out[s.id.casefold()] = scheds
    return out
