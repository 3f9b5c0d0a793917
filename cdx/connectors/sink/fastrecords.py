"""One compiled reader per routed writer schema that builds what a sink's plan needs in one pass.

``routed_reader(writer, shape)`` compiles (``cdx.codec.fastread``, ``result=``) a reader of a routed value
body that returns ``(change, key, row)``: the ``RoutedChange`` that ``parse_value`` would build from the
decoded value (the key dict taken from the value, as ``records._key_from_value``), the key tuple
(``Shape.key_values``) and, for an upsert, the row tuple (``Shape.row_values``: ``shape.names`` order,
timestamps naive UTC; None for a delete). The value's ``source``, ``target`` and ``position`` are read
into variables, not dicts; ``source`` only its ``change_version`` and ``ts_ms``.

The reader returns None where the value does not carry its key (a delete without ``before``, an upsert
without ``after``): the caller then decodes the record the general way (the key from the key bytes).
``routed_reader`` returns None for a writer schema it does not compile (the caller's general path).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, Protocol

from cdx.codec import AvroSchema
from cdx.codec.fastread import Reader, compile_reader
from cdx.codec.naming import SOURCE, SOURCE_NAMESPACE
from cdx.routed import RoutedChange, SourcePosition


class Shape(Protocol):
    """What the reader needs of a ``records.Shape`` (not imported: ``records`` imports this module)."""

    @property
    def fields(self) -> tuple[str, ...]: ...

    @property
    def key_fields(self) -> tuple[str, ...]: ...

    @property
    def timestamps(self) -> frozenset[int]: ...

SOURCE_KEPT = {f"{SOURCE_NAMESPACE}.{SOURCE}": ("change_version", "ts_ms")}
"""What a sink reads of a routed value's ``source`` (the rest is skipped over, not decoded)."""
_FLAT = ("cdx.Target", "cdx.Position", f"{SOURCE_NAMESPACE}.{SOURCE}")
"""Routed value records read into variables only (no dict is built for them)."""
_TIMESTAMPS = frozenset({"timestamp-micros", "timestamp-millis"})


def _naive(v: Any) -> Any:
    """``Shape.row_values``' conversion of one timestamp value."""
    if isinstance(v, dt.datetime) and v.tzinfo is not None:
        return v.replace(tzinfo=None) if v.tzinfo is dt.UTC else v.astimezone(dt.UTC).replace(tzinfo=None)
    return v


_CONSTS = {"_RC": RoutedChange, "_SP": SourcePosition, "_new": object.__new__, "_naive": _naive,
           "_NAIVE_EPOCH": dt.datetime(1970, 1, 1), "_UTC_EPOCH": dt.datetime(1970, 1, 1, tzinfo=dt.UTC)}
"""The names the generated lines use."""


def routed_reader(writer: AvroSchema, shape: Shape) -> Reader | None:
    """The compiled reader of routed value ``writer`` for ``shape``, or None (see the module docstring)."""
    schema = writer.to_dict()
    top = f"{schema.get('namespace')}.{schema['name']}" if schema.get("namespace") else str(schema["name"])
    row_types = _row_field_types(schema)
    if row_types is None:
        return None

    def result(fields: Mapping[str, str]) -> tuple[list[str], Mapping[str, Any]]:
        return _result_lines(fields, shape, row_types), _CONSTS

    return compile_reader(schema, SOURCE_KEPT, flat=(top, *_FLAT), result=result)


def _row_field_types(schema: Mapping[str, Any]) -> dict[str, Any] | None:
    """Field name -> Avro type of the row record (``before``/``after``), or None when the value has none."""
    fields = {f["name"]: f["type"] for f in schema.get("fields", [])}
    for name in ("after", "before"):  # the second names the record the first defines
        t = fields.get(name)
        if isinstance(t, list) and len(t) == 2 and t[0] == "null" and isinstance(t[1], Mapping):
            return {f["name"]: f["type"] for f in t[1].get("fields", [])}
    return None


def _value(fields: Mapping[str, str], record: str, name: str, avro: Any, timestamp: bool) -> str:
    """The expression of one row value: timestamps naive UTC, as ``Shape.row_values``/``key_values``."""
    v = fields[f"{record}.{name}"]
    if not timestamp:
        return v
    kind = avro[1] if isinstance(avro, list) and len(avro) == 2 and avro[0] == "null" else avro
    if isinstance(kind, Mapping) and kind.get("type") == "long" and kind.get("logicalType") in _TIMESTAMPS:
        # the reader's are aware UTC: their naive twin by arithmetic (``replace(tzinfo=None)`` costs ten times more)
        return f"(None if {v} is None else _NAIVE_EPOCH + ({v} - _UTC_EPOCH))"
    return f"_naive({v})"


def _result_lines(fields: Mapping[str, str], shape: Shape, row_types: Mapping[str, Any]) -> list[str]:
    """Code setting ``out`` to (change, key tuple, row tuple), or None (see the module docstring)."""
    f = fields.__getitem__
    stamps = {shape.fields[i] for i in shape.timestamps}

    def key_parts(record: str) -> tuple[str, str]:
        d = ", ".join(f"{k!r}: {f(f'{record}.{k}')}" for k in shape.key_fields)
        t = "".join(f"{_value(fields, record, k, row_types[k], k in stamps)}, " for k in shape.key_fields)
        return f"{{{d}}}", f"({t})"

    bd, bt = key_parts("before")
    ad, at = key_parts("after")
    row = "".join(f"{_value(fields, 'after', n, row_types[n], n in stamps)}, " for n in shape.fields)
    flt, op = fields.get("filter", "None"), f("op")
    flt_value = fields.get("filter.value", "None")
    return [
        f"if {op} == 'd':",
        f"    src = {f('before')}",
        "    if src is not None:",
        f"        k, kt, rt = {bd}, {bt}, None",
        "else:",
        f"    src = {f('after')}",
        "    if src is not None:",
        f"        k, kt, rt = {ad}, {at}, ({row})",
        "if src is None:",
        "    out = None",
        "else:",
        "    p = _new(_SP)",
        f"    p.__dict__.update({{'topic': {f('position.topic')}, 'partition': {f('position.partition')},"
        f" 'offset': {f('position.offset')}}})",
        "    c = _new(_RC)",
        f"    c.__dict__.update({{'schema': {f('target.schema')}, 'table': {f('target.table')},"
        f" 'subjob': {f('subjob')}, 'op': {op}, 'key': k, 'row': {f('after')}, 'position': p,"
        f" 'version': {f('source.change_version')}, 'source_ts_ms': {f('source.ts_ms')}, 'ts_ms': {f('ts_ms')},"
        f" 'filtered': {flt} is not None, 'filter_value': None if {flt} is None else {flt_value}}})",
        "    out = (c, kt, rt)",
    ]
