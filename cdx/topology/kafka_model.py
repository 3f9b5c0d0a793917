"""The ``kafka`` section of ``topology.yaml``: how to reach Kafka, name topics and encode records."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from cdx.topology.identifiers import TopicId
from cdx.topology.model_base import Model, stringify
from cdx.topology.principals import KafkaPrincipals, channel_identity

__all__ = ["KafkaConfig", "SchemaRegistry"]

_SECURITY_PREFIXES = ("sasl.", "ssl.")
_SECURITY_KEYS = {"security.protocol", "enable.ssl.certificate.verification", "ssl_key", "ssl_certificate"}


class SchemaRegistry(Model):
    """Optional Confluent-compatible schema registry."""

    url: str
    """Base URL, ``http(s)://host:port``."""
    config: dict[str, Annotated[str, BeforeValidator(stringify)]] = Field(default_factory=dict)
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
    security: dict[str, Annotated[str, BeforeValidator(stringify)]] = Field(default_factory=dict)
    """librdkafka security settings passed through verbatim: ``security.protocol``, ``sasl.*``, ``ssl.*``."""
    default_partitions: int = Field(default=1, ge=1, le=10_000)
    """Partitions of topics cdx creates."""
    replication_factor: int = Field(default=1, ge=1, le=32)
    """Replication factor of topics cdx creates."""
    manage_topics: bool = True
    """``true``: each role creates the topics it needs at start (needs Create rights). ``false`` (production
    with ACLs): roles only verify their topics exist with the expected settings; ``cdx kafka apply`` makes them."""
    principals: KafkaPrincipals | None = None
    """One Kafka identity per role/channel/register; ``cdx kafka apply`` grants each exactly its ACLs."""
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
            ports = [h for h in hosts if not 1 <= int(h.rsplit(":", 1)[1]) <= 65535 or not h.rsplit(":", 1)[0]]
            if ports:
                raise ValueError(f"{ports[0]!r} is not a host:port: the host must not be empty and the port must"
                                 " be 1 to 65535")
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
