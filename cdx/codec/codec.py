"""The ``Codec`` interface (defined in ``cdx.codec.base``) and its default implementation (Avro single-object encoding).

Every codec turns key/value dicts into Kafka record bytes and back::

    codec.encode_key(topic, schemas.key, key_dict)            -> bytes
    codec.encode_value(topic, schemas.value, envelope | None) -> bytes | None   (None: tombstone)
    codec.decode_key(topic, data, reader=None)                -> dict
    codec.decode_value(topic, data | None, reader=None)       -> dict | None
    codec.writer_schema(topic, data, is_key=False)            -> AvroSchema     (e.g. to create a table)

Decoding uses the writer schema named in the record, then projects onto ``reader`` if given (Avro
schema resolution). Decoded values are plain dicts; decimals are ``Decimal``, timestamps aware UTC
``datetime``, dates ``date``, UUIDs ``uuid.UUID``.

``make_codec(config)`` picks the wire format from ``encoding`` (``ENCODINGS``): ``avro`` (single-object
encoding with the schemas topic, the default), ``avro-registry`` (Confluent Schema Registry wire
format, ``registry.RegistryCodec``; also chosen when only ``schema_registry.url`` is set) or
``connect-json`` (Kafka Connect JSON with embedded schemas, ``connect_json.ConnectJsonCodec``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cdx.codec.base import Codec, SchemaLike
from cdx.codec.binary import read_body, write_body
from cdx.codec.schema import AvroSchema
from cdx.codec.schema_publisher import SchemaPublisher
from cdx.codec.schema_store import SchemaStore
from cdx.codec.single_object import frame, unframe

AVRO = "avro"
AVRO_REGISTRY = "avro-registry"
CONNECT_JSON = "connect-json"
ENCODINGS = (AVRO, AVRO_REGISTRY, CONNECT_JSON)
"""The values of the topology's ``kafka.encoding`` (and of ``make_codec``'s ``encoding`` key)."""
__all__ = ["AVRO", "AVRO_REGISTRY", "CONNECT_JSON", "ENCODINGS", "Codec", "SchemaLike", "SingleObjectCodec",
           "make_codec"]


class SingleObjectCodec(Codec):
    """Avro single-object encoding: ``C3 01`` + 8-byte LE CRC-64-AVRO fingerprint + Avro binary body.

    Encoding registers the writer schema in ``store`` and, with a ``publisher``, publishes it to the
    schemas topic (inside the producer's transaction). Decoding resolves the fingerprint through
    ``store`` (reading the schemas topic on a miss). The topic is not part of the bytes.
    """

    def __init__(self, store: SchemaStore | None = None, publisher: SchemaPublisher | None = None) -> None:
        self.store = store if store is not None else SchemaStore()
        self.publisher = publisher

    def _writer(self, schema: SchemaLike) -> AvroSchema:
        s = AvroSchema.of(schema)
        self.store.register(s)
        if self.publisher is not None:
            self.publisher.publish(s)
        return s

    def _encode(self, topic: str, schema: SchemaLike, datum: Mapping[str, Any], is_key: bool) -> bytes:
        s = self._writer(schema)
        return frame(s.fingerprint, write_body(s, datum))

    def _decode(self, topic: str, data: bytes, reader: SchemaLike | None, is_key: bool) -> Any:
        fp, body = unframe(data)
        return read_body(body, self.store.resolve(fp), AvroSchema.of(reader) if reader is not None else None)

    def writer_schema(self, topic: str, data: bytes, is_key: bool = False) -> AvroSchema:
        fp, _ = unframe(data)
        return self.store.resolve(fp)


def make_codec(config: Mapping[str, Any] | None = None, *, store: SchemaStore | None = None,
               publisher: SchemaPublisher | None = None, registry_client: Any = None) -> Codec:
    """The codec for ``config``.

    - ``encoding: connect-json``: ``ConnectJsonCodec`` (no store, no registry);
    - ``encoding: avro-registry``, or ``schema_registry.url`` set (or ``registry_client`` given):
      ``RegistryCodec``; every other
      ``schema_registry.*`` key is passed to the registry client without the prefix
      (``schema_registry.basic.auth.user.info`` ...); ``auto.register.schemas`` (default true).
    - otherwise: ``SingleObjectCodec(store, publisher)``.
    """
    conf = dict(config or {})
    encoding = conf.get("encoding") or AVRO
    if encoding not in ENCODINGS:
        raise ValueError(f"unknown encoding {encoding!r}: use one of {', '.join(ENCODINGS)}")
    if encoding == CONNECT_JSON:
        from cdx.codec.connect_json import ConnectJsonCodec

        return ConnectJsonCodec()
    if encoding == AVRO_REGISTRY or registry_client is not None or conf.get("schema_registry.url"):
        from cdx.codec.registry import RegistryCodec

        return RegistryCodec.from_config(conf, client=registry_client)
    return SingleObjectCodec(store, publisher)
