"""Debezium-style change envelopes: the Key / Value / Envelope / Source schemas and the records.

For a table (namespace ``ns``, from its topic) with columns ``cols``:

- key schema: record ``ns.Key`` with the primary-key columns, in the order given, non-null;
- value schema: record ``ns.Envelope``::

      before: ["null", ns.Value]  default null   row before the change (delete: may hold the key only)
      after:  ["null", ns.Value]  default null   row after the change (null for a delete)
      source: cdx.Source                          where and when the change was read
      op:     string                              "c" insert, "u" update, "d" delete, "r" snapshot read
      ts_ms:  long                                when cdx processed the change (epoch millis)

  where ``ns.Value`` holds every column (primary key non-null, the rest ``["null", T]``).
- ``cdx.Source``: Debezium's source fields with Debezium's types: version (string: the cdx release
  that wrote it, as Debezium's connector version), connector, name, ts_ms, snapshot (string
  "true"/"false"/"last"), db, schema, table; then change_version (long: the change-tracking
  version of the change; for records read from a Debezium topic, its ``lsn``).

Every name is fixed, so the same columns always give the same schemas and fingerprints.
After a delete the producer writes a tombstone (same key, null value): ``change_records`` does that.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from cdx import __version__
from cdx.codec.columns import Column, avro_field_to_column, check_unique_fields, column_field
from cdx.codec.errors import EncodeError, SchemaError
from cdx.codec.naming import ENVELOPE, KEY, SOURCE, SOURCE_NAMESPACE, VALUE, namespace_for
from cdx.codec.schema import AvroSchema


class Op(StrEnum):
    CREATE = "c"
    UPDATE = "u"
    DELETE = "d"
    READ = "r"


class Snapshot(StrEnum):
    """``source.snapshot``: Debezium's string values (not a boolean)."""

    FALSE = "false"
    TRUE = "true"
    LAST = "last"


SOURCE_VERSION = __version__
"""``source.version``: the cdx release, a string like Debezium's connector version (``3.6.0.Final``)."""

SOURCE_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": SOURCE,
    "namespace": SOURCE_NAMESPACE,
    "fields": [
        {"name": "version", "type": "string"},
        {"name": "connector", "type": "string"},
        {"name": "name", "type": "string"},
        {"name": "ts_ms", "type": "long"},
        {"name": "snapshot", "type": "string", "default": "false"},
        {"name": "db", "type": "string"},
        {"name": "schema", "type": "string"},
        {"name": "table", "type": "string"},
        {"name": "change_version", "type": "long"},
    ],
}
SOURCE_FIELDS = tuple(f["name"] for f in SOURCE_SCHEMA["fields"])


@dataclass(frozen=True)
class SourceInfo:
    """The ``source`` block: which connector read the change, from where, at which CT version."""

    connector: str
    name: str
    db: str
    schema: str
    table: str
    change_version: int
    ts_ms: int
    snapshot: Snapshot | str = Snapshot.FALSE
    version: str = SOURCE_VERSION

    def to_avro(self) -> dict[str, Any]:
        out: dict[str, Any] = {f: getattr(self, f) for f in SOURCE_FIELDS}  # in the schema's field order
        out.update(ts_ms=int(self.ts_ms), snapshot=Snapshot(self.snapshot).value,
                   change_version=int(self.change_version))
        return out


def source_block(source: Mapping[str, Any]) -> dict[str, Any]:
    """A ``cdx.Source`` dict from any Debezium-style source block (cdx's, or a Debezium connector's).

    A Debezium record has no ``change_version``: its ``lsn`` (PostgreSQL), else ``change_lsn``/``scn``
    when numeric, else 0 stands in. Missing text fields become ``""``; ``snapshot`` defaults to "false".
    """
    if "change_version" in source and "version" in source and len(source) == len(SOURCE_FIELDS):
        return dict(source)
    position = source.get("change_version")
    if position is None:
        position = next((source[k] for k in ("lsn", "change_lsn", "scn")
                         if isinstance(source.get(k), int) and not isinstance(source.get(k), bool)), 0)
    out: dict[str, Any] = {f: str(source.get(f) or "") for f in SOURCE_FIELDS}  # the text fields; then:
    out.update(ts_ms=int(source.get("ts_ms") or 0), snapshot=str(source.get("snapshot") or Snapshot.FALSE.value),
               change_version=int(position))
    return out


def key_schema(namespace: str, columns: Sequence[Column]) -> dict[str, Any]:
    """The ``Key`` record of the primary-key columns (order as in ``columns``)."""
    pk = [c for c in columns if c.primary_key]
    if not pk:
        raise SchemaError(f"table {namespace}: no primary-key column; cdx keys records by primary key")
    return {"type": "record", "name": KEY, "namespace": namespace, "fields": [column_field(c) for c in pk]}


def row_schema(namespace: str, columns: Sequence[Column]) -> dict[str, Any]:
    """The ``Value`` (row) record of all columns."""
    check_unique_fields(columns)
    if not columns:
        raise SchemaError(f"table {namespace}: no columns")
    return {"type": "record", "name": VALUE, "namespace": namespace, "fields": [column_field(c) for c in columns]}


def envelope_schema(namespace: str, columns: Sequence[Column]) -> dict[str, Any]:
    """The ``Envelope`` record (the Kafka value schema) of a table."""
    row = row_schema(namespace, columns)
    return {
        "type": "record",
        "name": ENVELOPE,
        "namespace": namespace,
        "fields": [
            {"name": "before", "type": ["null", row], "default": None},
            {"name": "after", "type": ["null", f"{namespace}.{VALUE}"], "default": None},
            {"name": "source", "type": SOURCE_SCHEMA},
            {"name": "op", "type": "string"},
            {"name": "ts_ms", "type": "long"},
        ],
    }


@dataclass(frozen=True)
class TableSchemas:
    """The key and value schemas of one table, built from its columns."""

    namespace: str
    columns: tuple[Column, ...]
    key: AvroSchema
    value: AvroSchema
    key_generation: int = 0
    value_generation: int = 0

    @classmethod
    def build(cls, topic_or_table: str, columns: Iterable[Column], *,
              key_generation: int = 0, value_generation: int = 0) -> TableSchemas:
        """Schemas for ``columns``; the namespace comes from ``topic_or_table`` (``naming.namespace_for``).

        Generations are 0 unless the schema store asks for another (``SchemaStore.register_table``).
        """
        cols = tuple(columns)
        base = namespace_for(topic_or_table)
        key = AvroSchema.of(key_schema(namespace_for(topic_or_table, key_generation), cols))
        value = AvroSchema.of(envelope_schema(namespace_for(topic_or_table, value_generation), cols))
        return cls(base, cols, key, value, key_generation, value_generation)

    @property
    def primary_key(self) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if c.primary_key)

    def key_of(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """The key dict of a row dict (keyed by Avro field names)."""
        try:
            return {c.field: row[c.field] for c in self.primary_key}
        except KeyError as e:
            raise EncodeError(f"row of {self.namespace} lacks primary-key field {e.args[0]!r}") from None


def make_envelope(op: Op | str, *, before: Mapping[str, Any] | None = None, after: Mapping[str, Any] | None = None,
                  source: SourceInfo | Mapping[str, Any], ts_ms: int) -> dict[str, Any]:
    """An envelope dict, checked: c/r need ``after``; u needs ``after``; d needs ``before`` and no ``after``.

    For a delete, ``before`` may hold the key fields only (other fields are written as null).
    """
    o = Op(op)
    if o in (Op.CREATE, Op.READ, Op.UPDATE) and after is None:
        raise EncodeError(f"op {o.value!r} needs 'after'")
    if o is Op.DELETE and (before is None or after is not None):
        raise EncodeError("op 'd' needs 'before' (at least the key) and no 'after'")
    src = source.to_avro() if isinstance(source, SourceInfo) else dict(source)
    return {
        "before": dict(before) if before is not None else None,
        "after": dict(after) if after is not None else None,
        "source": src,
        "op": o.value,
        "ts_ms": int(ts_ms),
    }


def change_records(key: Mapping[str, Any], envelope: Mapping[str, Any]) -> list[tuple[Mapping[str, Any],
                                                                                     Mapping[str, Any] | None]]:
    """The Kafka records for one change, in order: ``(key, envelope)``, then ``(key, None)`` after a delete.

    The tombstone (null value) lets log compaction drop the key. Encode each with the codec
    (``encode_value(None)`` is ``None``) and produce them to the same topic, in this order.
    """
    out: list[tuple[Mapping[str, Any], Mapping[str, Any] | None]] = [(key, envelope)]
    if envelope.get("op") == Op.DELETE.value:
        out.append((key, None))
    return out


def _row_record(value_schema: Any) -> Mapping[str, Any]:
    """The row record inside an Envelope schema, or the schema itself if it is a row record."""
    if not isinstance(value_schema, Mapping) or value_schema.get("type") != "record":
        raise SchemaError(f"not a record schema: {str(value_schema)[:200]}")
    names = [f["name"] for f in value_schema.get("fields", [])]
    if "after" in names and "before" in names and "op" in names:
        for f in value_schema["fields"]:
            if f["name"] == "before":
                branches = f["type"] if isinstance(f["type"], list) else [f["type"]]
                for b in branches:
                    if isinstance(b, Mapping) and b.get("type") == "record":
                        return b
        raise SchemaError("Envelope schema whose 'before' does not define the row record")
    return value_schema


def columns_from_schemas(value_schema: AvroSchema | Mapping[str, Any],
                         key_schema: AvroSchema | Mapping[str, Any] | None = None) -> list[Column]:
    """The columns of a table from its value schema (Envelope or row record) and key schema.

    Primary-key columns are the fields of ``key_schema``; without one, the row's non-null fields.
    Types come from the Avro schemas (so a sink can create or alter its table from them).
    """
    val = value_schema.to_dict() if isinstance(value_schema, AvroSchema) else value_schema
    row = _row_record(val)
    if key_schema is not None:
        key = key_schema.to_dict() if isinstance(key_schema, AvroSchema) else key_schema
        pk_fields = {f["name"] for f in key.get("fields", [])}
    else:
        pk_fields = {f["name"] for f in row["fields"] if not isinstance(f["type"], list)}
    cols = [avro_field_to_column(f, primary_key=f["name"] in pk_fields) for f in row["fields"]]
    missing = pk_fields - {f["name"] for f in row["fields"]}
    if missing:
        raise SchemaError(f"key fields {sorted(missing)} are not in the row record")
    return cols
