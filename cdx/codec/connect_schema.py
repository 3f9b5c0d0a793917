"""Kafka Connect schemas (as ``JsonConverter`` embeds them) <-> Avro schemas, both ways.

``to_connect(avro)`` gives the Connect schema JSON of an Avro schema cdx writes; ``to_avro(connect)``
gives an Avro schema for a Connect schema found on a topic (cdx's, or another producer's such as
Debezium's), so every role keeps working with ``AvroSchema`` and ``columns_from_schemas``.

Type mapping (Avro -> Connect; the reverse accepts the Connect and Debezium names below)::

    int / long / float / double / boolean / string / bytes   int32 / int64 / float32 / float64 / ...
    decimal(p, s)        bytes  "org.apache.kafka.connect.data.Decimal"  {scale, connect.decimal.precision}
    date                 int32  "org.apache.kafka.connect.data.Date"     (days since the epoch)
    timestamp-millis     int64  "org.apache.kafka.connect.data.Timestamp" (epoch millis)
    timestamp-micros     int64  "io.debezium.time.MicroTimestamp"        (epoch micros; Connect's own
                                 Timestamp holds millis only and cdx never rounds a value)
    uuid                 string "io.debezium.data.Uuid"
    record               struct named by the record's full name
    ["null", T]          T with "optional": true

Read only: ``io.debezium.time.Date`` (date), ``io.debezium.time.Timestamp`` (millis),
``io.debezium.time.ZonedTimestamp`` (ISO-8601 text, read as a UTC timestamp), ``int8``/``int16``
(int). cdx's own attributes (``cdx.length``, ``cdx.column``) travel as Connect ``parameters``.
The conversions are pure and cached by the caller (``connect_json``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cdx.codec.canonical import fullname
from cdx.codec.columns import COLUMN_ATTR, LENGTH_ATTR
from cdx.codec.errors import SchemaError
from cdx.codec.naming import avro_name

DECIMAL = "org.apache.kafka.connect.data.Decimal"
DATE = "org.apache.kafka.connect.data.Date"
TIMESTAMP = "org.apache.kafka.connect.data.Timestamp"
MICRO_TIMESTAMP = "io.debezium.time.MicroTimestamp"
UUID = "io.debezium.data.Uuid"
DBZ_DATE = "io.debezium.time.Date"
DBZ_TIMESTAMP = "io.debezium.time.Timestamp"
ZONED_TIMESTAMP = "io.debezium.time.ZonedTimestamp"
PRECISION_PARAM = "connect.decimal.precision"
DEFAULT_DECIMAL_PRECISION = 38

_PRIMITIVE_TO_CONNECT = {"int": "int32", "long": "int64", "float": "float32", "double": "float64",
                         "boolean": "boolean", "string": "string", "bytes": "bytes"}
_CONNECT_TO_PRIMITIVE = {"int8": "int", "int16": "int", "int32": "int", "int64": "long", "float32": "float",
                         "float64": "double", "boolean": "boolean", "string": "string", "bytes": "bytes"}
_LOGICAL_TO_CONNECT = {"date": ("int32", DATE), "timestamp-millis": ("int64", TIMESTAMP),
                       "timestamp-micros": ("int64", MICRO_TIMESTAMP), "uuid": ("string", UUID)}
_CONNECT_TO_LOGICAL = {DATE: ("int", "date"), DBZ_DATE: ("int", "date"),
                       TIMESTAMP: ("long", "timestamp-millis"), DBZ_TIMESTAMP: ("long", "timestamp-millis"),
                       MICRO_TIMESTAMP: ("long", "timestamp-micros"),
                       ZONED_TIMESTAMP: ("long", "timestamp-micros"), UUID: ("string", "uuid")}


# -- Avro -> Connect ------------------------------------------------------------------------------

def to_connect(avro: Any) -> dict[str, Any]:
    """The Connect schema of an Avro schema (dict or primitive name), every named type expanded."""
    return _to_connect(avro, {}, None)


def _to_connect(avro: Any, named: dict[str, dict[str, Any]], namespace: str | None) -> dict[str, Any]:
    if isinstance(avro, list):
        branches = [b for b in avro if b != "null"]
        if len(branches) != 1 or len(avro) > 2:
            raise SchemaError(f"Avro union {avro!r} has no Connect equivalent (only ['null', T])")
        return {**_to_connect(branches[0], named, namespace), "optional": True}
    if isinstance(avro, str):
        if avro in _PRIMITIVE_TO_CONNECT:
            return {"type": _PRIMITIVE_TO_CONNECT[avro], "optional": False}
        ref = named.get(avro) or (named.get(f"{namespace}.{avro}") if namespace else None)
        if ref is None:
            raise SchemaError(f"Avro type {avro!r} is not defined before use")
        return dict(ref)
    if not isinstance(avro, Mapping):
        raise SchemaError(f"not an Avro schema: {avro!r}")
    typ = avro.get("type")
    if typ == "record":
        full = fullname(avro["name"], avro.get("namespace", namespace))
        ns = full.rpartition(".")[0] or None
        out = {"type": "struct", "fields": [_connect_field(f, named, ns) for f in avro["fields"]],
               "optional": False, "name": full}
        named[full] = out
        return out
    if typ in ("array", "map"):
        inner = _to_connect(avro["items" if typ == "array" else "values"], named, namespace)
        if typ == "array":
            return {"type": "array", "items": inner, "optional": False}
        return {"type": "map", "keys": {"type": "string", "optional": False}, "values": inner, "optional": False}
    return _logical_to_connect(avro, typ, named, namespace)


def _logical_to_connect(avro: Mapping[str, Any], typ: Any, named: dict[str, dict[str, Any]],
                        namespace: str | None) -> dict[str, Any]:
    logical = avro.get("logicalType")
    if logical == "decimal":
        return {"type": "bytes", "optional": False, "name": DECIMAL, "version": 1,
                "parameters": {"scale": str(avro.get("scale", 0)), PRECISION_PARAM: str(avro["precision"])}}
    if logical in _LOGICAL_TO_CONNECT:
        ctype, name = _LOGICAL_TO_CONNECT[logical]
        return {"type": ctype, "optional": False, "name": name, "version": 1}
    if isinstance(typ, str | list | Mapping) and typ not in ("fixed", "enum"):
        out = _to_connect(typ, named, namespace)
        if LENGTH_ATTR in avro:
            out["parameters"] = {**out.get("parameters", {}), LENGTH_ATTR: str(avro[LENGTH_ATTR])}
        return out
    raise SchemaError(f"Avro type {typ!r} has no Connect equivalent in cdx")


def _connect_field(field: Mapping[str, Any], named: dict[str, dict[str, Any]], ns: str | None) -> dict[str, Any]:
    out = _to_connect(field["type"], named, ns)
    if COLUMN_ATTR in field:
        out["parameters"] = {**out.get("parameters", {}), COLUMN_ATTR: str(field[COLUMN_ATTR])}
    if "default" in field and field["default"] is not None:
        out["default"] = field["default"]
    return {**out, "field": field["name"]}


# -- Connect -> Avro ------------------------------------------------------------------------------

def to_avro(connect: Mapping[str, Any]) -> Any:
    """An Avro schema for a Connect schema (optional -> ``["null", T]``; structs named, reused by name)."""
    return _to_avro(connect, set(), "Struct")


def _record_name(name: str | None, fallback: str) -> tuple[str, str | None]:
    parts = [avro_name(p) for p in (name or fallback).split(".") if p]
    return parts[-1], (".".join(parts[:-1]) or None)


def _to_avro(schema: Mapping[str, Any], defined: set[str], path: str) -> Any:
    inner = _to_avro_required(schema, defined, path)
    if schema.get("optional"):
        return ["null", inner]
    return inner


def _to_avro_required(schema: Mapping[str, Any], defined: set[str], path: str) -> Any:
    typ = schema.get("type")
    name = schema.get("name")
    params = schema.get("parameters") or {}
    if typ == "struct":
        short, ns = _record_name(name, path)
        full = f"{ns}.{short}" if ns else short
        if full in defined:
            return full
        defined.add(full)
        fields = [_avro_field(f, defined, f"{path}_{f.get('field', '')}") for f in schema.get("fields", [])]
        record: dict[str, Any] = {"type": "record", "name": short, "fields": fields}
        if ns:
            record["namespace"] = ns
        return record
    if typ == "array":
        return {"type": "array", "items": _to_avro(schema["items"], defined, path + "_item")}
    if typ == "map":
        return {"type": "map", "values": _to_avro(schema["values"], defined, path + "_value")}
    if name == DECIMAL and typ == "bytes":
        precision = int(params.get(PRECISION_PARAM, DEFAULT_DECIMAL_PRECISION))
        return {"type": "bytes", "logicalType": "decimal", "precision": precision, "scale": int(params.get("scale", 0))}
    if name in _CONNECT_TO_LOGICAL:
        base, logical = _CONNECT_TO_LOGICAL[name]
        return {"type": base, "logicalType": logical}
    if typ not in _CONNECT_TO_PRIMITIVE:
        raise SchemaError(f"Connect type {typ!r} (name {name!r}) at {path} has no Avro equivalent in cdx")
    base = _CONNECT_TO_PRIMITIVE[typ]
    if LENGTH_ATTR in params:
        return {"type": base, LENGTH_ATTR: int(params[LENGTH_ATTR])}
    return base


def _avro_field(field: Mapping[str, Any], defined: set[str], path: str) -> dict[str, Any]:
    name = field.get("field")
    if not name:
        raise SchemaError(f"Connect struct field without a name at {path}")
    out: dict[str, Any] = {"name": avro_name(name), "type": _to_avro(field, defined, path)}
    original = (field.get("parameters") or {}).get(COLUMN_ATTR) or (name if avro_name(name) != name else None)
    if original:
        out[COLUMN_ATTR] = original
    if field.get("optional"):
        out["default"] = None
    elif "default" in field and not isinstance(field["default"], dict | list):
        out["default"] = field["default"]
    return out
