"""The topology model: a frozen, validated pydantic tree of everything cdx replicates.

Build one with :func:`cdx.topology.load_topology` (from ``topology.yaml``) or
``validate_topology(data)``; both run every cross-reference check and raise
:class:`~cdx.topology.issues.TopologyError` listing all problems. Models are immutable and
hashable; to change one, validate a new one (``model_copy(update=...)`` skips validation).

Columns and tables are plain strings matched case-insensitively. ``DATAAREAID`` (the legal
entity column) never appears in a field list: consumers add it wherever the table has it.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

from cdx.topology.database_model import Database, HqDatabase
from cdx.topology.dsn import Dialect
from cdx.topology.extensions import Extensions
from cdx.topology.identifiers import Identifier, TableRef, TableRefField, TopicId
from cdx.topology.kafka_model import KafkaConfig, SchemaRegistry
from cdx.topology.model_base import ChannelType, Direction, Model, stringify
from cdx.topology.schedule import CONTINUOUS, check_zone
from cdx.topology.schedule import Plan as SchedulePlan
from cdx.topology.schedule import normalise as schedule_entries
from cdx.topology.schedule import parse as parse_schedule

__all__ = [
    "DATAAREAID",
    "DEFAULT_CHANNEL_SCHEMA",
    "DEFAULT_EXTENSION_SCHEMA",
    "Channel",
    "ChannelDataGroup",
    "ChannelExtension",
    "ChannelFilter",
    "ChannelType",
    "Database",
    "Dialect",
    "Direction",
    "DistributionSchedule",
    "Extensions",
    "FieldMap",
    "HqDatabase",
    "Job",
    "KafkaConfig",
    "Model",
    "OfflineRegister",
    "SchemaRegistry",
    "Subjob",
]

DATAAREAID = "DATAAREAID"
"""The legal-entity column; cdx handles it, so it must never be mapped explicitly."""
DEFAULT_CHANNEL_SCHEMA = "ax"
"""Channel schema of a subjob's target table when none is given (as in CDX channel databases)."""
DEFAULT_EXTENSION_SCHEMA = "ext"
"""Schema of an extension table when none is given (CDX only allows ``ext``)."""


class FieldMap(Model):
    """One mapped column: ``name`` at HQ (AxFields/Field Name), ``to_name`` in the channel (ToName)."""

    name: Identifier
    to_name: Identifier | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"name": data} if isinstance(data, str) else data

    @property
    def channel_name(self) -> str:
        """The channel column: ``to_name`` or, by default, ``name``."""
        return self.to_name or self.name


class ChannelFilter(Model):
    """Deliver only the rows where ``column`` equals the channel's ``attributes[attribute]``.

    Used for tables that carry a channel key (e.g. ``RETAILCHANNELTABLE.RECID``) so that one
    group topic serves every channel of the group while each channel database gets its own rows.
    Compare ``str(row[column]) == str(value)``. An offline register uses its channel's attributes.
    """

    column: Identifier
    """HQ column holding the channel key; must be one of the subjob's fields."""
    attribute: Identifier
    """Key in :attr:`Channel.attributes` every receiving channel must define."""


class ChannelExtension(Model):
    """An extension table for a subjob (CDX ``TargetTableName``/``TargetTableSchema`` + ``OverrideTarget``).

    The extension's ``fields`` live in ``table`` rather than in the subjob's channel table;
    rows of the two tables are matched on ``key`` (DATAAREAID implied), or on the primary
    table's primary key when ``key`` is empty. For an upload subjob with ``override_target``,
    only the extension table is read (the subjob's own fields are not uploaded).
    """

    table: TableRefField
    """The extension table; schema ``ext`` if none is written."""
    override_target: bool = False
    fields: tuple[FieldMap, ...] = Field(min_length=1)
    key: tuple[Identifier, ...] = ()
    """Channel columns present in both tables that identify a row."""

    @property
    def target(self) -> TableRef:
        """The extension table with its schema filled in."""
        return self.table.with_default_schema(DEFAULT_EXTENSION_SCHEMA)

    def channel_columns(self) -> list[tuple[str, str]]:
        """``(hq_column, channel_column)`` for every extension field, in order."""
        return [(f.name, f.channel_name) for f in self.fields]


class Job(Model):
    """A scheduler job (e.g. ``1040`` Products, ``P-0001`` upload): a named set of subjobs."""

    id: TopicId
    description: str | None = None
    direction: Direction
    offline: bool = True
    """False: the job's subjobs are left out of offline register databases (CDX's "exclude from offline")."""


class Subjob(Model):
    """One replicated table: where it comes from, where it goes, which columns, which jobs.

    For a download subjob ``hq_table`` is the source and the channel table the target; for an
    upload subjob it is the other way round.
    """

    id: TopicId
    description: str | None = None
    direction: Direction = Direction.DOWNLOAD
    hq_table: TableRefField
    """HQ table (CDX AxTableName), e.g. ``dbo.INVENTTABLE``; an unqualified name uses the HQ default schema."""
    channel_table: TableRefField | None = None
    """Channel table (TargetTableSchema.TargetTableName); default ``ax.<hq table name>``."""
    fields: tuple[FieldMap, ...] = Field(min_length=1)
    """Explicit column list (CDX always lists fields); DATAAREAID is implicit."""
    scheduled_by: tuple[TopicId, ...] = Field(min_length=1)
    """Ids of the jobs that schedule this subjob (ScheduledByJob)."""
    replication_counter: Identifier | None = None
    """Upload only: the channel column whose growth marks new rows (e.g. REPLICATIONCOUNTERFROMORIGIN)."""
    extension: ChannelExtension | None = None
    channel_filter: ChannelFilter | None = None
    offline: bool | None = None
    """False: left out of offline register databases; None: as its jobs say (left out when every job
    scheduling it has ``offline: false``)."""
    source_topic: TopicId | None = None
    """Download only: the table topic to route from when another capture writes it (e.g. Debezium's
    PostgreSQL source: ``dbserver1.public.inventtable``, in the topology's ``kafka.encoding``). cdx's own
    capture then leaves the table alone. Default: cdx's ``<prefix>.<hq name>.<schema>.<table>``."""

    @field_validator("scheduled_by", mode="before")
    @classmethod
    def _one_job(cls, value: Any) -> Any:
        return [value] if isinstance(value, str | int) and not isinstance(value, bool) else value

    @property
    def target(self) -> TableRef:
        """The channel table, defaults filled in (schema ``ax``, name = HQ table name)."""
        ref = self.channel_table or TableRef(None, self.hq_table.name)
        return ref.with_default_schema(DEFAULT_CHANNEL_SCHEMA)

    @property
    def is_upload(self) -> bool:
        return self.direction is Direction.UPLOAD

    def channel_columns(self) -> list[tuple[str, str]]:
        """``(hq_column, channel_column)`` for every field of the subjob's own table, in order."""
        return [(f.name, f.channel_name) for f in self.fields]

    def all_fields(self) -> tuple[FieldMap, ...]:
        """The subjob's fields followed by its extension's fields."""
        return self.fields + (self.extension.fields if self.extension else ())


class OfflineRegister(Model):
    """A POS register with its own offline database; it receives what its channel receives."""

    id: TopicId
    description: str | None = None
    database: Database


class Channel(Model):
    """A store, online store or call center, with its channel database."""

    id: TopicId
    description: str | None = None
    type: ChannelType = ChannelType.STORE
    database: Database
    attributes: dict[Identifier, StrictStr | StrictInt] = Field(default_factory=dict)
    """Values used by :class:`ChannelFilter` (e.g. ``recid: 5637144576``)."""
    offline_registers: tuple[OfflineRegister, ...] = ()


class ChannelDataGroup(Model):
    """A channel data group: the legal entities whose rows it receives and its channels."""

    id: TopicId
    description: str | None = None
    legal_entities: tuple[Annotated[str, BeforeValidator(stringify)], ...] = Field(min_length=1)
    """DATAAREAID values (compared case-insensitively); rows of tables without DATAAREAID go to every group."""
    channels: tuple[Channel, ...] = ()

    @field_validator("legal_entities")
    @classmethod
    def _entities(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entity in value:
            if not entity or not entity.replace("_", "a").isalnum() or len(entity) > 8:
                raise ValueError(f"{entity!r} is not a legal entity id (DATAAREAID): use up to 8 letters/digits")
        return value


class DistributionSchedule(Model):
    """Runs jobs for channel data groups: downloads to, or uploads from, their channels."""

    id: TopicId
    description: str | None = None
    direction: Direction
    jobs: tuple[TopicId, ...] = Field(min_length=1)
    channel_data_groups: tuple[TopicId, ...] = Field(min_length=1)
    schedule: Annotated[tuple[str, ...], BeforeValidator(schedule_entries)] = (CONTINUOUS,)
    """``continuous``, time windows (``"Mon-Fri 22:00-06:00"``, a list of them) or an interval
    (``every 15m``): when sinks apply this schedule's records (:mod:`cdx.topology.schedule`)."""
    timezone: Annotated[str, AfterValidator(check_zone)] = "UTC"
    """IANA time zone the windows and intervals are read in."""

    @property
    def plan(self) -> SchedulePlan:
        """The parsed ``schedule``."""
        return parse_schedule(self.schedule)
