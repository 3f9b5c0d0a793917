"""Confluent Schema Registry wire format: magic byte 0 + 4-byte big-endian schema id + Avro body.

Uses ``confluent_kafka.schema_registry`` (``AvroSerializer``/``AvroDeserializer``) with the TOPIC
subject strategy (subjects ``<topic>-key`` and ``<topic>-value``). Needs the client's registry extras
(``authlib``, ``httpx2``, ``cachetools``, ``attrs``); they are imported only when this mode is used.
A ``mock://name`` URL gives the client's in-memory registry (one per client object: share the
client between a test's producer and consumer codecs).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from cdx.codec.base import Codec, SchemaLike
from cdx.codec.errors import DecodeError, EncodeError, SchemaError, SchemaStoreUnavailable, UnknownSchemaError
from cdx.codec.schema import AvroSchema
from cdx.codec.single_object import MAGIC as SINGLE_OBJECT_MAGIC

CONFIG_PREFIX = "schema_registry."


def _is_transport_error(e: BaseException) -> bool:
    return any(c.__module__.split(".")[0] in ("httpx", "httpx2", "httpcore", "httpcore2")
               for c in type(e).__mro__)


def _registry_error(e: Exception, what: str, *, decoding: bool) -> Exception:
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    if isinstance(e, SchemaRegistryError):
        status = e.http_status_code
        if decoding and status == 404:
            return UnknownSchemaError(f"{what}: schema not found in the registry ({e})", what)
        if status in (409, 422):
            return SchemaError(f"{what}: the registry refused the schema ({e}); check the subject's"
                               " compatibility setting or the schema change")
        if status in (401, 403):
            return SchemaError(f"{what}: not allowed by the registry ({e}); check schema_registry credentials")
        return SchemaStoreUnavailable(f"{what}: schema registry error ({e})")
    if _is_transport_error(e):
        return SchemaStoreUnavailable(f"{what}: schema registry unreachable ({type(e).__name__}: {e})")
    if decoding:
        return DecodeError(f"{what}: {type(e).__name__}: {e}")
    return EncodeError(f"{what}: {type(e).__name__}: {e}")


class RegistryCodec(Codec):
    """``Codec`` over a Confluent Schema Registry (real, or ``mock://`` for tests)."""

    def __init__(self, client: Any, *, auto_register: bool = True, use_latest_version: bool = False) -> None:
        from confluent_kafka.schema_registry import topic_subject_name_strategy

        self.client = client
        self.auto_register = auto_register
        self.use_latest_version = use_latest_version
        self._strategy = topic_subject_name_strategy
        self._serializers: dict[tuple[str, bool], Any] = {}
        self._deserializers: dict[str | None, Any] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config: Mapping[str, Any], client: Any = None) -> RegistryCodec:
        """From cdx config keys: ``schema_registry.url`` and other ``schema_registry.*`` client settings,
        ``auto.register.schemas`` (default true), ``use.latest.version`` (default false)."""
        if client is None:
            from confluent_kafka.schema_registry import SchemaRegistryClient

            conf = {k[len(CONFIG_PREFIX):]: v for k, v in config.items() if k.startswith(CONFIG_PREFIX)}
            if not conf.get("url"):
                raise SchemaError("schema_registry.url is required for the Schema Registry wire format")
            client = SchemaRegistryClient.new_client(conf)
        return cls(client, auto_register=_bool(config.get("auto.register.schemas", True)),
                   use_latest_version=_bool(config.get("use.latest.version", False)))

    # -- encode ---------------------------------------------------------------------------------

    def _serializer(self, schema: AvroSchema, is_key: bool) -> Any:
        cache_key = (schema.identity, is_key)
        hit = self._serializers.get(cache_key)
        if hit is not None:
            return hit
        from confluent_kafka.schema_registry.avro import AvroSerializer

        prepare = schema.prepare

        def to_dict(obj: Any, _ctx: Any) -> Any:
            return prepare(obj) if prepare is not None else obj

        ser = AvroSerializer(self.client, schema.text, to_dict=to_dict, conf={
            "auto.register.schemas": self.auto_register,
            "use.latest.version": self.use_latest_version,
            "subject.name.strategy": self._strategy,
        })
        with self._lock:
            return self._serializers.setdefault(cache_key, ser)

    def _encode(self, topic: str, schema: SchemaLike, datum: Mapping[str, Any], is_key: bool) -> bytes:
        from confluent_kafka.serialization import MessageField, SerializationContext

        s = AvroSchema.of(schema)
        ctx = SerializationContext(topic, MessageField.KEY if is_key else MessageField.VALUE)
        what = f"{topic} {'key' if is_key else 'value'}"
        try:
            out: bytes = self._serializer(s, is_key)(datum, ctx)
        except (EncodeError, SchemaError):
            raise
        except Exception as e:
            raise _registry_error(e, what, decoding=False) from e
        return out

    # -- decode ---------------------------------------------------------------------------------

    def _deserializer(self, reader: AvroSchema | None) -> Any:
        cache_key = reader.identity if reader is not None else None
        hit = self._deserializers.get(cache_key)
        if hit is not None:
            return hit
        from confluent_kafka.schema_registry.avro import AvroDeserializer

        des = AvroDeserializer(self.client, reader.text if reader is not None else None)
        with self._lock:
            return self._deserializers.setdefault(cache_key, des)

    @staticmethod
    def _check(topic: str, data: bytes) -> None:
        if data[:2] == SINGLE_OBJECT_MAGIC:
            raise DecodeError(f"record on {topic} is Avro single-object encoded (c301...), not in the Schema"
                              " Registry wire format: this deployment has no schema_registry.url there")
        if len(data) < 5 or data[0] != 0:
            raise DecodeError(f"record on {topic} is not in the Schema Registry wire format"
                              f" (starts with {bytes(data[:5]).hex()!r})")

    def _decode(self, topic: str, data: bytes, reader: SchemaLike | None, is_key: bool) -> Any:
        from confluent_kafka.serialization import MessageField, SerializationContext

        self._check(topic, data)
        ctx = SerializationContext(topic, MessageField.KEY if is_key else MessageField.VALUE)
        r = AvroSchema.of(reader) if reader is not None else None
        what = f"{topic} {'key' if is_key else 'value'} (schema id {int.from_bytes(data[1:5], 'big')})"
        try:
            return self._deserializer(r)(data, ctx)
        except Exception as e:
            raise _registry_error(e, what, decoding=True) from e

    def writer_schema(self, topic: str, data: bytes, is_key: bool = False) -> AvroSchema:
        self._check(topic, data)
        schema_id = int.from_bytes(data[1:5], "big")
        try:
            registered = self.client.get_schema(schema_id)
        except Exception as e:
            raise _registry_error(e, f"{topic} schema id {schema_id}", decoding=True) from e
        return AvroSchema.of(registered.schema_str)


def _bool(v: Any) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in ("1", "true", "yes", "on")
    return bool(v)
