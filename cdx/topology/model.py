"""The topology model: a frozen, validated pydantic tree of everything cdx replicates.

Build one with :func:`cdx.topology.load_topology` (from ``topology.yaml``) or
``validate_topology(data)``; both run every cross-reference check and raise
:class:`~cdx.topology.issues.TopologyError` listing all problems. Models are immutable and
hashable; to change one, validate a new one (``model_copy(update=...)`` skips validation).

Columns and tables are plain strings matched case-insensitively. ``DATAAREAID`` (the legal
entity column) never appears in a field list: consumers add it wherever the table has it.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from cdx.topology.dsn import Dialect, check_dsn, dsn_key, infer_dialect, redact, sqlite_path
from cdx.topology.extensions import Extensions, PostUpload
from cdx.topology.identifiers import Identifier, TableRef, TableRefField, TopicId
from cdx.topology.principals import KafkaPrincipals, channel_identity
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


def _freeze(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return tuple(_freeze(getattr(value, name)) for name in type(value).model_fields)
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value


class Model(BaseModel):
    """Base of every topology model: frozen, unknown keys rejected, hashable by value."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_enum_values=False)

    def __hash__(self) -> int:
        return hash((type(self).__name__, _freeze(self)))


class Direction(StrEnum):
    """Which way data flows: ``download`` (HQ -> channels) or ``upload`` (channels -> HQ)."""

    DOWNLOAD = "download"
    UPLOAD = "upload"


class ChannelType(StrEnum):
    """The kind of channel; informational (routing does not depend on it)."""

    STORE = "store"
    ONLINE = "online"
    CALL_CENTER = "call_center"


def _stringify(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


_SECURITY_PREFIXES = ("sasl.", "ssl.")
_SECURITY_KEYS = {"security.protocol", "enable.ssl.certificate.verification", "ssl_key", "ssl_certificate"}


class SchemaRegistry(Model):
    """Optional Confluent-compatible schema registry."""

    url: str
    """Base URL, ``http(s)://host:port``."""
    config: dict[str, Annotated[str, BeforeValidator(_stringify)]] = Field(default_factory=dict)
    """Extra client settings passed through (e.g. ``basic.auth.user.info``)."""

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an http:// or https:// URL")
        return value


class KafkaConfig(Model):
    """How to reach Kafka and name topics."""

    bootstrap_servers: str
    """librdkafka ``bootstrap.servers``: ``host:port[,host:port...]``."""
    topic_prefix: TopicId = "cdx"
    """First component of every topic name (see :mod:`cdx.topics`)."""
    security: dict[str, Annotated[str, BeforeValidator(_stringify)]] = Field(default_factory=dict)
    """librdkafka security settings passed through verbatim: ``security.protocol``, ``sasl.*``, ``ssl.*``."""
    default_partitions: int = Field(default=1, ge=1, le=10_000)
    """Partitions of topics cdx creates."""
    replication_factor: int = Field(default=1, ge=1, le=32)
    """Replication factor of topics cdx creates."""
    manage_topics: bool = True
    principals: KafkaPrincipals | None = None
    """One Kafka identity per role/channel/register; ``cdx kafka apply`` grants each exactly its ACLs."""
    """``true``: each role creates the topics it needs at start (needs Create rights). ``false`` (production
    with ACLs): roles only verify their topics exist with the expected settings; ``cdx kafka apply`` makes them."""
    schema_registry: SchemaRegistry | None = None
    max_message_bytes: int = Field(default=8 * 1024 * 1024, ge=1024 * 1024, le=64 * 1024 * 1024)
    """Largest record cdx publishes (bytes, default 8 MiB): set as ``message.max.bytes`` on the capture and
    upload producers and ``max.message.bytes`` on the table and upload topics. A larger row is dead-lettered."""
    encoding: Literal["avro", "avro-registry", "connect-json"] | None = None
    """Record encoding of every cdx topic (table, group, upload topics): ``avro`` (Avro single-object
    encoding, schemas on the schemas topic; the default), ``avro-registry`` (Confluent Schema Registry
    wire format; needs ``schema_registry``; the default when ``schema_registry`` is given) or
    ``connect-json`` (Kafka Connect JSON with embedded schemas). See docs/envelope.md."""

    @model_validator(mode="after")
    def _encoding_needs(self) -> KafkaConfig:
        if self.encoding == "avro-registry" and self.schema_registry is None:
            raise ValueError("encoding 'avro-registry' needs schema_registry.url: add a schema_registry section"
                             " or choose encoding 'avro' or 'connect-json'")
        if self.encoding in ("avro", "connect-json") and self.schema_registry is not None:
            raise ValueError(f"encoding {self.encoding!r} does not use the schema_registry section: remove it,"
                             " or choose encoding 'avro-registry'")
        return self

    @property
    def record_encoding(self) -> str:
        """The encoding in effect (``encoding``, or its default)."""
        if self.encoding is not None:
            return self.encoding
        return "avro-registry" if self.schema_registry is not None else "avro"

    def codec_config(self) -> dict[str, str]:
        """The settings ``cdx.codec.make_codec`` takes for this topology's encoding (registry client included)."""
        out = {"encoding": self.record_encoding}
        if self.schema_registry is not None:
            reg = self.schema_registry
            out.update({"schema_registry.url": reg.url, **{f"schema_registry.{k}": v for k, v in reg.config.items()}})
        return out

    @field_validator("bootstrap_servers", mode="before")
    @classmethod
    def _servers(cls, value: Any) -> Any:
        if isinstance(value, list):
            value = ",".join(str(v) for v in value)
        if isinstance(value, str):
            hosts = [h.strip() for h in value.split(",")]
            bad = [h for h in hosts if not h or ":" not in h or not h.rsplit(":", 1)[1].isdigit()]
            if bad:
                raise ValueError(f"{value!r} is not a list of host:port (bad entry {bad[0]!r})")
            return ",".join(hosts)
        return value

    @field_validator("security")
    @classmethod
    def _security(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if key not in _SECURITY_KEYS and not key.startswith(_SECURITY_PREFIXES):
                raise ValueError(
                    f"{key!r} is not a security setting: only security.protocol, sasl.* and ssl.* "
                    "librdkafka keys belong here"
                )
        return value

    def client_config(self) -> dict[str, str]:
        """librdkafka settings every client needs: ``bootstrap.servers`` plus :attr:`security`."""
        return {"bootstrap.servers": self.bootstrap_servers, **self.security}

    def security_of(self, owner_id: str) -> dict[str, str]:
        """The security settings of a channel's or offline register's own clients (its sink consumer, its
        upload producer): :attr:`security` with the ``sasl.*`` of its identity in ``principals.channels``
        merged over it; :attr:`security` itself when it has none. A process serving many channels logs
        each channel's clients in with that channel's credentials."""
        identity = channel_identity(self.principals, owner_id)
        return dict(self.security) if identity is None else {**self.security, **identity.sasl_settings()}

    def shared_security(self, owner_ids: Iterable[str]) -> dict[str, str]:
        """The security settings of the clients a process shares among the channels it serves (the schemas
        reader, topic checks at start): the identity of the first of ``owner_ids`` that has one (every
        channel's identity may read the schemas topic and write dead letters), else :attr:`security`."""
        for owner_id in owner_ids:
            if channel_identity(self.principals, owner_id) is not None:
                return self.security_of(owner_id)
        return dict(self.security)


class Database(Model):
    """A database: its dialect and DSN (the dialect may be omitted when the DSN shows it)."""

    dialect: Dialect
    dsn: str

    @model_validator(mode="before")
    @classmethod
    def _infer(cls, data: Any) -> Any:
        if isinstance(data, dict) and "dialect" not in data and isinstance(data.get("dsn"), str):
            found = infer_dialect(data["dsn"])
            if found is None:
                raise ValueError("cannot tell the dialect from the dsn: add 'dialect: sqlite|postgresql|sqlserver'")
            data = {**data, "dialect": found}
        return data

    @field_validator("dsn")
    @classmethod
    def _check(cls, dsn: str, info: ValidationInfo) -> str:
        dialect = info.data.get("dialect")
        if dialect is not None:
            check_dsn(dialect, dsn)
        return dsn

    @property
    def key(self) -> str:
        """Normalised identity (absolute path for SQLite, ``host:port/db`` otherwise)."""
        return dsn_key(self.dialect, self.dsn)

    @property
    def sqlite_path(self) -> str | None:
        """The file path of a SQLite database (relative to the cwd if relative), else ``None``."""
        return sqlite_path(self.dsn) if self.dialect is Dialect.SQLITE else None

    def redacted(self) -> str:
        """The DSN with any password masked, for logs and summaries."""
        return redact(self.dsn)


class HqDatabase(Database):
    """The HQ database; ``name`` is the database component of its table topics."""

    name: TopicId = "hq"
    post_upload: PostUpload | None = None
    """Called once per committed upload session (see :class:`~cdx.topology.extensions.PostUpload`)."""


def _field_from_str(value: Any) -> Any:
    return {"name": value} if isinstance(value, str) else value


class FieldMap(Model):
    """One mapped column: ``name`` at HQ (AxFields/Field Name), ``to_name`` in the channel (ToName)."""

    name: Identifier
    to_name: Identifier | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return _field_from_str(data)

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
    legal_entities: tuple[Annotated[str, BeforeValidator(_stringify)], ...] = Field(min_length=1)
    """DATAAREAID values (compared case-insensitively); rows of tables without DATAAREAID go to every group."""
    channels: tuple[Channel, ...] = ()

    @field_validator("legal_entities")
    @classmethod
    def _entities(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entity in value:
            if not entity or not entity.replace("_", "a").isalnum() or len(entity) > 8:
                raise ValueError(f"{entity!r} is not a legal entity id (DATAAREAID): use up to 8 letters/digits")
        return value

    def receives_legal_entity(self, dataareaid: str) -> bool:
        """True if rows with this DATAAREAID value belong to the group."""
        wanted = dataareaid.strip().casefold()
        return any(e.casefold() == wanted for e in self.legal_entities)


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
