"""The record format of channel data-group topics: the router's contract with the sinks.

A routed record tells a sink everything it needs without knowing HQ names:

- **key**: the target table's primary key (channel column names), Avro, in the namespace
  ``routed.<schema>.<table>`` so two tables with equal key values never share key bytes
  (per-key order is kept and the topic can be compacted);
- **value**: a Debezium-style envelope (``before``/``after``/``source``/``op``/``ts_ms``, the
  HQ change it came from) extended with ``target`` (channel schema and table), ``subjob`` and
  ``position``: the **source position** (topic, partition, offset) of the HQ record in its
  per-table topic. The transactional router writes each once; with the at-least-once faust
  engine a sink recognises a re-sent record because its source offset is not above the
  watermark it stored for (group partition, source topic, source partition). See docs/routing.md.
  For a subjob with a ``channel_filter`` the value also carries ``filter``:
  ``{"value": <the HQ row's filter column as a string, or null>}``, the same in every record of
  one HQ change (its own table's and its extension table's), so a sink filters both alike even
  when only one of them has the filter column. ``filter`` is null for unfiltered subjobs,
  deletes, and when the HQ writer schema lacks the filter column.
- a **tombstone** (null value, same key) ends every routed delete. Its headers
  (``tombstone_headers``) carry the source position, target table and subjob, so a sink that
  reads the tombstone alone (the delete before it compacted away) applies it as a delete
  (``parse_tombstone``).

Rows use the channel column names (``ToName``), DATAAREAID included when the HQ table has it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from cdx.codec import AvroSchema, Column
from cdx.codec.envelope import columns_from_schemas, envelope_schema, key_schema, source_block
from cdx.codec.naming import namespace_for

ROUTED_NAMESPACE_ROOT = "routed"
ROUTED_VALUE_NAME = "Envelope"
ROUTED_VALUE_NAMES = (ROUTED_VALUE_NAME, "RoutedChange")
"""Names routed value schemas have had (``RoutedChange`` before cdx spoke Connect JSON): sinks accept both."""

_POSITION = {
    "type": "record", "name": "Position", "namespace": "cdx",
    "fields": [{"name": "topic", "type": "string"}, {"name": "partition", "type": "int"},
               {"name": "offset", "type": "long"}],
}
_FILTER = {
    "type": "record", "name": "FilterValue", "namespace": "cdx",
    "fields": [{"name": "value", "type": ["null", "string"], "default": None}],
}
ROUTING_FIELDS = ("target", "subjob", "position", "filter")
"""Value fields that describe the routing, not channel columns."""
_TARGET = {
    "type": "record", "name": "Target", "namespace": "cdx",
    "fields": [{"name": "schema", "type": "string"}, {"name": "table", "type": "string"}],
}


@dataclass(frozen=True)
class SourcePosition:
    """Where the HQ change sits in its per-table topic."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class RoutedSchemas:
    """Key and value schemas of one target table's routed records."""

    schema: str
    table: str
    columns: tuple[Column, ...]
    key: AvroSchema
    value: AvroSchema

    @property
    def key_columns(self) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if c.primary_key)


@lru_cache(maxsize=4096)
def routed_schemas(schema: str, table: str, columns: tuple[Column, ...]) -> RoutedSchemas:
    """Schemas for target ``schema.table`` with channel ``columns`` (cached; parse once)."""
    namespace = namespace_for(f"{ROUTED_NAMESPACE_ROOT}.{schema}.{table}")
    value = envelope_schema(namespace, columns)
    # Named ``Envelope`` (not ``RoutedChange`` as before): Debezium's sinks take a value whose schema
    # name ends in ".Envelope" for a change event (io.debezium.data.Envelope.isEnvelopeSchema).
    value = {**value, "name": ROUTED_VALUE_NAME, "fields": [
        *value["fields"],
        {"name": "target", "type": _TARGET},
        {"name": "subjob", "type": "string"},
        {"name": "position", "type": _POSITION},
        {"name": "filter", "type": ["null", _FILTER], "default": None},
    ]}
    return RoutedSchemas(schema, table, columns, AvroSchema.of(key_schema(namespace, columns)), AvroSchema.of(value))


@dataclass(frozen=True)
class RoutedChange:
    """One change for one target table, as a sink applies it.

    ``key`` holds the primary-key values; ``row`` the full channel row (None for a delete).
    ``version`` is the HQ change-tracking version; ``source_ts_ms`` when capture read it.
    """

    schema: str
    table: str
    subjob: str
    op: str
    key: dict[str, Any]
    row: dict[str, Any] | None
    position: SourcePosition
    version: int
    source_ts_ms: int
    ts_ms: int
    filtered: bool = False
    """True when the router sent the HQ row's filter-column value (``filter_value``)."""
    filter_value: str | None = None

    @property
    def is_delete(self) -> bool:
        return self.op == "d"


def make_value(schemas: RoutedSchemas, *, op: str, key: Mapping[str, Any], row: Mapping[str, Any] | None,
               source: Mapping[str, Any], ts_ms: int, subjob: str, position: SourcePosition,
               filtered: bool = False, filter_value: str | None = None) -> dict[str, Any]:
    """The routed envelope dict (encode it with ``codec.encode_value(topic, schemas.value, ...)``).

    ``filtered``: the subjob has a channel filter and ``filter_value`` is the HQ row's value of
    the filter column (str, or None for NULL); the sinks filter on it.
    """
    return {
        "before": dict(key) if op == "d" else None,
        "after": dict(row) if row is not None and op != "d" else None,
        "source": source_block(source),
        "op": op,
        "ts_ms": int(ts_ms),
        "target": {"schema": schemas.schema, "table": schemas.table},
        "subjob": subjob,
        "position": {"topic": position.topic, "partition": position.partition, "offset": position.offset},
        "filter": {"value": filter_value} if filtered else None,
    }


TOMBSTONE_HEADERS = ("cdx.op", "cdx.source.topic", "cdx.source.partition", "cdx.source.offset",
                     "cdx.target.schema", "cdx.target.table", "cdx.subjob")


def tombstone_headers(schemas: RoutedSchemas, subjob: str, position: SourcePosition) -> list[tuple[str, bytes]]:
    """Headers of a routed tombstone: it is the delete of its key at ``position`` in ``schemas``' table."""
    values = ("d", position.topic, str(position.partition), str(position.offset), schemas.schema, schemas.table,
              subjob)
    return [(name, v.encode()) for name, v in zip(TOMBSTONE_HEADERS, values, strict=True)]


def parse_tombstone(key: Mapping[str, Any], headers: Sequence[tuple[str, bytes | None]] | None
                    ) -> RoutedChange | None:
    """The delete a routed tombstone stands for, or None when its headers do not say (an older router)."""
    got = {name: (v or b"").decode() for name, v in headers or () if name in TOMBSTONE_HEADERS}
    if len(got) != len(TOMBSTONE_HEADERS) or got["cdx.op"] != "d":
        return None
    position = SourcePosition(got["cdx.source.topic"], int(got["cdx.source.partition"]),
                              int(got["cdx.source.offset"]))
    return RoutedChange(schema=got["cdx.target.schema"], table=got["cdx.target.table"], subjob=got["cdx.subjob"],
                        op="d", key=dict(key), row=None, position=position, version=-1, source_ts_ms=0, ts_ms=0)


def parse_value(key: Mapping[str, Any], value: Mapping[str, Any]) -> RoutedChange:
    """A decoded routed value (plus its decoded key) as a ``RoutedChange``.

    A sink parses every record it consumes (a bootstrap millions): the frozen instances are filled
    through their ``__dict__``, as their generated ``__init__`` would, without its per-field
    ``object.__setattr__`` (a third of the cost)."""
    pos = value["position"]
    src = value["source"]
    flt = value.get("filter")
    target = value["target"]
    position = _new(SourcePosition)
    position.__dict__.update(topic=pos["topic"], partition=int(pos["partition"]), offset=int(pos["offset"]))
    change = _new(RoutedChange)
    change.__dict__.update(
        schema=target["schema"], table=target["table"], subjob=value["subjob"], op=value["op"], key=dict(key),
        row=value["after"], position=position, version=int(src["change_version"]), source_ts_ms=int(src["ts_ms"]),
        ts_ms=int(value["ts_ms"]), filtered=flt is not None, filter_value=flt["value"] if flt is not None else None)
    return change


_new = object.__new__


def columns_of(value_schema: AvroSchema, key_schema_: AvroSchema) -> list[Column]:
    """The channel table's columns (types from the Avro schemas), for creating or altering it."""
    value = value_schema.to_dict()
    fields = [f for f in value["fields"] if f["name"] not in ROUTING_FIELDS]
    return columns_from_schemas({**value, "fields": fields}, key_schema_.to_dict())
