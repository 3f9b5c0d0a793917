"""The record codec: Debezium-style Avro envelopes, two wire formats, schemas topic, partitioning.

Modules: ``columns`` (Column/LogicalType <-> Avro), ``naming``, ``envelope`` (schemas and records),
``canonical`` (Parsing Canonical Form, CRC-64-AVRO), ``schema`` (``AvroSchema``), ``prepare``
(value normalization), ``binary`` (Avro bodies), ``single_object`` (framing), ``schema_store``
(schemas topic), ``codec`` (``Codec``, ``SingleObjectCodec``, ``make_codec``), ``registry``
(Confluent wire format), ``connect_schema``/``connect_json`` (Kafka Connect JSON), ``partition``
(murmur2). See docs/envelope.md.
"""

from cdx.codec.codec import Codec, SingleObjectCodec, make_codec
from cdx.codec.columns import Column, LogicalType
from cdx.codec.connect_json import ConnectJsonCodec
from cdx.codec.envelope import Op, SourceInfo, TableSchemas, change_records, columns_from_schemas, make_envelope
from cdx.codec.errors import DecodeError, SchemaError, SchemaStoreUnavailable, UnknownSchemaError
from cdx.codec.partition import murmur2_partition
from cdx.codec.schema import AvroSchema
from cdx.codec.schema_publisher import SchemaPublisher
from cdx.codec.schema_store import SchemaStore, ensure_schemas_topic

__all__ = [
    "AvroSchema", "Codec", "Column", "ConnectJsonCodec", "DecodeError", "LogicalType", "Op", "SchemaError",
    "SchemaPublisher", "SchemaStore", "SchemaStoreUnavailable", "SingleObjectCodec", "SourceInfo", "TableSchemas",
    "UnknownSchemaError", "change_records", "columns_from_schemas", "ensure_schemas_topic", "make_codec",
    "make_envelope", "murmur2_partition",
]
