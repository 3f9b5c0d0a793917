"""The record codec: Debezium-style Avro envelopes, two wire formats, schemas topic, partitioning.

Modules: ``columns`` (Column/LogicalType <-> Avro), ``naming``, ``envelope`` (schemas and records),
``canonical`` (Parsing Canonical Form, CRC-64-AVRO), ``schema`` (``AvroSchema``), ``prepare``
(value normalization), ``binary`` (Avro bodies), ``single_object`` (framing), ``schema_store``
(schemas topic), ``codec`` (``Codec``, ``SingleObjectCodec``, ``make_codec``), ``registry``
(Confluent wire format), ``connect_schema``/``connect_json`` (Kafka Connect JSON), ``partition``
(murmur2). See docs/envelope.md.
"""

from cdx.codec.canonical import fingerprint, fingerprint_hex, parsing_canonical_form, rabin64
from cdx.codec.codec import AVRO, AVRO_REGISTRY, CONNECT_JSON, ENCODINGS, Codec, SingleObjectCodec, make_codec
from cdx.codec.columns import Column, LogicalType, avro_field_to_column, avro_type_to_column, column_field
from cdx.codec.connect_json import ConnectJsonCodec
from cdx.codec.envelope import (
    Op,
    Snapshot,
    SourceInfo,
    TableSchemas,
    change_records,
    columns_from_schemas,
    envelope_schema,
    key_schema,
    make_envelope,
    row_schema,
)
from cdx.codec.errors import (
    DecodeError,
    EncodeError,
    SchemaConflictError,
    SchemaError,
    SchemaStoreUnavailable,
    UnknownSchemaError,
)
from cdx.codec.naming import avro_name, namespace_for
from cdx.codec.partition import PRODUCER_PARTITIONER, PRODUCER_PARTITIONER_CONFIG, murmur2, murmur2_partition
from cdx.codec.registry import RegistryCodec
from cdx.codec.schema import AvroSchema
from cdx.codec.schema_publisher import SchemaPublisher
from cdx.codec.schema_store import (
    DEFAULT_SCHEMAS_TOPIC,
    SCHEMAS_TOPIC_CONFIG,
    SchemaStore,
    ensure_schemas_topic,
)

__all__ = [
    "AVRO",
    "AVRO_REGISTRY",
    "CONNECT_JSON",
    "DEFAULT_SCHEMAS_TOPIC",
    "ENCODINGS",
    "PRODUCER_PARTITIONER",
    "PRODUCER_PARTITIONER_CONFIG",
    "SCHEMAS_TOPIC_CONFIG",
    "AvroSchema",
    "Codec",
    "Column",
    "ConnectJsonCodec",
    "DecodeError",
    "EncodeError",
    "LogicalType",
    "Op",
    "RegistryCodec",
    "SchemaConflictError",
    "SchemaError",
    "SchemaPublisher",
    "SchemaStore",
    "SchemaStoreUnavailable",
    "SingleObjectCodec",
    "Snapshot",
    "SourceInfo",
    "TableSchemas",
    "UnknownSchemaError",
    "avro_field_to_column",
    "avro_name",
    "avro_type_to_column",
    "change_records",
    "column_field",
    "columns_from_schemas",
    "ensure_schemas_topic",
    "envelope_schema",
    "fingerprint",
    "fingerprint_hex",
    "key_schema",
    "make_codec",
    "make_envelope",
    "murmur2",
    "murmur2_partition",
    "namespace_for",
    "parsing_canonical_form",
    "rabin64",
    "row_schema",
]
