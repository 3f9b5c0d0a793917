"""The root of ``topology.yaml``: :class:`Topology` and the questions every role asks of it.

The model here checks field shapes only; the cross-reference checks of
:func:`cdx.topology.validate.check_topology` are run by the loader
(:func:`cdx.topology.loader.parse_topology`, :func:`cdx.topology.loader.validate_topology`).
Query helpers are pure and cached (the index is built on first use).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from typing import Any, Literal

from pydantic import Field

from cdx.topics import group_topic, upload_topic
from cdx.topology.extensions import Extensions
from cdx.topology.identifiers import TableRef
from cdx.topology.index import ChannelInfo, DatabaseInfo, TopologyIndex
from cdx.topology.model import (
    Channel,
    ChannelDataGroup,
    Direction,
    DistributionSchedule,
    HqDatabase,
    Job,
    KafkaConfig,
    Model,
    Subjob,
)


class Topology(Model):
    """The whole ``topology.yaml``. Query helpers are pure and cached (built on first use)."""

    version: Literal[1] = 1
    kafka: KafkaConfig
    hq: HqDatabase
    jobs: tuple[Job, ...] = ()
    subjobs: tuple[Subjob, ...] = ()
    channel_data_groups: tuple[ChannelDataGroup, ...] = ()
    distribution_schedules: tuple[DistributionSchedule, ...] = ()
    extensions: Extensions = Field(default_factory=Extensions)
    """Channel database extensions: scripts, schemas, grants (:mod:`cdx.topology.extensions`)."""

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Topology:
        """Copy without the cached index (prefer ``Topology.model_validate`` to get checks)."""
        copy = super().model_copy(update=update, deep=deep)
        copy.__dict__.pop("index", None)
        return copy

    @cached_property
    def index(self) -> TopologyIndex:
        """Precomputed lookups behind the query helpers below."""
        return TopologyIndex(self)

    # -- query helpers ------------------------------------------------------------------
    def job(self, job_id: str) -> Job | None:
        """The job with this id (case-insensitive), or ``None``."""
        return self.index.jobs.get(job_id.casefold())

    def subjob(self, subjob_id: str) -> Subjob | None:
        """The subjob with this id (case-insensitive), or ``None``."""
        return self.index.subjobs.get(subjob_id.casefold())

    def group(self, group_id: str) -> ChannelDataGroup | None:
        """The channel data group with this id (case-insensitive), or ``None``."""
        return self.index.groups.get(group_id.casefold())

    def channel(self, channel_id: str) -> Channel | None:
        """The channel with this id (case-insensitive), or ``None``."""
        info = self.index.channels.get(channel_id.casefold())
        return info.channel if info else None

    def subjob_for_hq_table(self, table: TableRef | str) -> Subjob | None:
        """The subjob replicating this HQ table (case-insensitive; a missing schema means the HQ default)."""
        return self.index.subjob_for_hq_table(table)

    def download_subjobs(self) -> list[Subjob]:
        """Download subjobs, in file order."""
        return [s for s in self.subjobs if s.direction is Direction.DOWNLOAD]

    def upload_subjobs(self) -> list[Subjob]:
        """Upload subjobs, in file order."""
        return [s for s in self.subjobs if s.direction is Direction.UPLOAD]

    def jobs_of(self, subjob: Subjob | str) -> list[Job]:
        """The jobs scheduling a subjob."""
        return list(self.index.jobs_of(subjob))

    def groups_for_subjob(self, subjob: Subjob | str) -> list[ChannelDataGroup]:
        """Groups a subjob reaches: those of the schedules (same direction) that run one of its jobs."""
        return list(self.index.groups_for_subjob(subjob))

    def subjobs_for_group(self, group_id: str, direction: Direction = Direction.DOWNLOAD) -> list[Subjob]:
        """Subjobs of ``direction`` that reach a group, in file order."""
        return list(self.index.subjobs_for_group(group_id, direction))

    def group_of_channel(self, channel_id: str) -> ChannelDataGroup | None:
        """The group a channel (or an offline register, by its id) belongs to."""
        info = self.index.channels.get(channel_id.casefold()) or self.index.registers.get(channel_id.casefold())
        return info.group if info else None

    def channels(self) -> list[ChannelInfo]:
        """Every channel with its group, in file order."""
        return list(self.index.channels.values())

    def databases(self) -> list[DatabaseInfo]:
        """Every channel and offline-register database with its owner, channel and group."""
        return list(self.index.databases)

    def filter_value(self, subjob: Subjob, channel_id: str) -> str | None:
        """For a subjob with a :class:`ChannelFilter`, the value (as a string) a row's column must
        have for this channel or offline register; ``None`` when the subjob is not filtered.
        Raises ``KeyError`` for an unknown channel or one lacking the attribute (validation
        guarantees the attribute on every channel the subjob reaches)."""
        return self.index.filter_value(subjob, channel_id)

    def hq_table_topic(self, subjob: Subjob | str) -> str:
        """Topic of the HQ change stream for a download subjob's table."""
        return self.index.hq_table_topic(subjob)

    def group_topic(self, group_id: str) -> str:
        """Topic carrying a group's routed download rows."""
        return group_topic(self.kafka.topic_prefix, group_id)

    def upload_topic(self, channel_id: str) -> str:
        """Topic carrying a channel's uploaded rows."""
        return upload_topic(self.kafka.topic_prefix, channel_id)

    def topics(self) -> list[str]:
        """Every topic this topology uses, sorted."""
        return self.index.topics()
