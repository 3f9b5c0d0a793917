"""Byte-level reading of a table topic's Avro envelope, without decoding it. Pure.

A per-table topic's value is the envelope ``before``/``after``/``source``/``op``/``ts_ms``
(``cdx.codec.envelope``) in Avro binary. Avro binary carries no field names and every field of a
flat record is one self-delimiting run of bytes, so a compiled ``EnvelopeLayout`` can find where
each column of ``after`` starts and ends, and read ``op``, by skipping lengths and varints alone:
no Python objects per column, no Decimal or datetime construction. ``cdx.streams.fastpath`` slices the
routed value together from those runs.

``EnvelopeLayout.compile(schema)`` returns None for what it does not handle (a column of a
complex type: array, map, enum, nested record, a union other than ``["null", T]``); callers then
take the decoding path. ``scan`` returns None for a record it cannot read as an upsert (``before``
not null, ``after`` null: a delete; malformed bytes), again leaving the record to the decoding path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cdx.codec.fastread import read_long

VARINT = -1
"""``int``, ``long`` (zigzag varints)."""
PREFIXED = -2
"""``string``, ``bytes`` (a varint length, then the bytes)."""
_FIXED_SIZES = {"boolean": 1, "float": 4, "double": 8}
_VARINTS = ("int", "long")
_PREFIXED = ("string", "bytes")

Field = tuple[bool, int]
"""(nullable, kind): kind is ``VARINT``, ``PREFIXED`` or a fixed size in bytes."""


def field_kind(avro_type: Any) -> Field | None:
    """The (nullable, kind) of a column's Avro type, or None when it is not a flat scalar."""
    nullable = False
    if isinstance(avro_type, list):
        if len(avro_type) != 2 or avro_type[0] != "null":
            return None
        nullable, avro_type = True, avro_type[1]
    if isinstance(avro_type, Mapping):
        if avro_type.get("type") == "fixed":
            return nullable, int(avro_type["size"])
        avro_type = avro_type.get("type")
    if avro_type in _VARINTS:
        return nullable, VARINT
    if avro_type in _PREFIXED:
        return nullable, PREFIXED
    if avro_type in _FIXED_SIZES:
        return nullable, _FIXED_SIZES[str(avro_type)]
    return None


def _fields(record: Any) -> tuple[Field, ...] | None:
    if not isinstance(record, Mapping) or record.get("type") != "record":
        return None
    kinds = [field_kind(f["type"]) for f in record.get("fields", ())]
    return None if any(k is None for k in kinds) else tuple(k for k in kinds if k is not None)


def skip(data: bytes, i: int, fields: Sequence[Field], starts: list[int] | None) -> int:
    """The offset after ``fields`` read from ``data[i:]``; each field's start appended to ``starts``."""
    for nullable, kind in fields:
        if starts is not None:
            starts.append(i)
        if nullable:
            b = data[i]
            i += 1
            if b == 0:
                continue
            if b != 2:
                raise ValueError("bad union index")
        if kind == PREFIXED:
            b = data[i]
            if b < 0x80:
                i += 1 + (b >> 1)
                continue
            n, i = read_long(data, i)
            if n < 0:
                raise ValueError("negative length")
            i += n
        elif kind == VARINT:
            while data[i] & 0x80:
                i += 1
            i += 1
        else:
            i += kind
    return i


def read_string(run: bytes, nullable: bool) -> str | None:
    """The value of one string column's run of bytes (as ``skip`` delimits it)."""
    if nullable:
        if run[0] == 0:
            return None
        run = run[1:]
    n, i = read_long(run, 0)
    return run[i:i + n].decode()


@dataclass(frozen=True)
class EnvelopeLayout:
    """Where an envelope's parts lie, for one writer schema (see the module docstring)."""

    names: tuple[str, ...]
    """The ``after`` row's Avro field names, writer order."""
    row: tuple[Field, ...]
    source: tuple[Field, ...]

    @classmethod
    def compile(cls, schema: Mapping[str, Any]) -> EnvelopeLayout | None:
        fields = schema.get("fields") if schema.get("type") == "record" else None
        if not fields or [f["name"] for f in fields] != ["before", "after", "source", "op", "ts_ms"]:
            return None
        before, after, source = fields[0]["type"], fields[1]["type"], fields[2]["type"]
        if not (isinstance(before, list) and len(before) == 2 and before[0] == "null"
                and isinstance(after, list) and len(after) == 2 and after[0] == "null"):
            return None
        record = before[1]
        named = {record.get("name"), f"{record.get('namespace')}.{record.get('name')}"} \
            if isinstance(record, Mapping) else set()
        if after[1] is not record and after[1] != record and after[1] not in named:
            return None
        row, src = _fields(record), _fields(source)
        if row is None or src is None or fields[3]["type"] != "string" or fields[4]["type"] != "long":
            return None
        return cls(tuple(f["name"] for f in record["fields"]), row, src)

    def scan(self, data: bytes, start: int) -> tuple[list[int], int, str] | None:
        """The row's field starts plus its end, where ``source`` starts, and ``op``; for an upsert the row
        is ``after`` (``before`` null), for a delete ``before`` (``after`` null). None for anything else.

        ``op`` is read backwards from the end: ``ts_ms`` is the last varint (its last byte alone has
        the high bit clear) and ``op`` the one-character string before it."""
        first = data[start]
        upsert = first == 0
        if not ((upsert and data[start + 1] == 2) or first == 2):
            return None
        starts: list[int] = []
        try:
            end = skip(data, start + 2 if upsert else start + 1, self.row, starts)
            if not upsert and data[end] != 0:
                return None
            source = end if upsert else end + 1
            j = len(data) - 2
            while data[j] & 0x80:
                j -= 1
        except (IndexError, ValueError):
            return None
        starts.append(end)
        op = chr(data[j])
        if j <= source + 1 or data[j - 1] != 2 or op not in ("cur" if upsert else "d"):
            return None
        return starts, source, op
