"""Avro Parsing Canonical Form and the CRC-64-AVRO (Rabin) fingerprint, per the Avro spec.

``parsing_canonical_form`` follows the spec's transformation rules (PRIMITIVES, FULLNAMES, STRIP,
ORDER, STRINGS, INTEGERS, WHITESPACE). It is checked against the Avro project's own test vectors and
against fastavro's implementation in the tests.

``detailed_form`` is cdx's own stricter variant: the same rules, but it keeps the attributes that
the canonical form strips and that change how bytes are interpreted or what a sink creates
(``logicalType``, ``precision``, ``scale`` and every ``cdx.*`` attribute). The schema store uses it
to detect two schemas with one fingerprint (see ``SchemaConflictError``); it never goes on the wire.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from cdx.codec.errors import SchemaError

PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
NAMED = frozenset({"record", "error", "enum", "fixed"})
_DETAIL_ORDER = ("logicalType", "precision", "scale")

# CRC-64-AVRO: the Rabin fingerprint with the spec's EMPTY polynomial.
EMPTY64 = 0xC15D213AA4D7A795


def _make_table() -> tuple[int, ...]:
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (EMPTY64 & -(fp & 1))
        table.append(fp)
    return tuple(table)


_FP_TABLE = _make_table()


def rabin64(data: bytes) -> int:
    """The 64-bit CRC-64-AVRO fingerprint of ``data`` as an unsigned int (Java's is the same bits, signed)."""
    fp = EMPTY64
    for byte in data:
        fp = (fp >> 8) ^ _FP_TABLE[(fp ^ byte) & 0xFF]
    return fp


def load_json(schema: Any) -> Any:
    """A schema as its decoded JSON value: JSON text is parsed, decoded values are returned as they are.

    A bare type name (``int``, ``null``, ``a.b.Rec``) is taken as that name, not as JSON.
    """
    if isinstance(schema, str | bytes):
        text = (schema.decode() if isinstance(schema, bytes) else schema).strip()
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            return text
        return value if isinstance(value, str | list | dict) else text
    return schema


def fullname(name: str, namespace: str | None) -> str:
    """The full name of an Avro named type written as ``name`` inside ``namespace``."""
    return name if "." in name or not namespace else f"{namespace}.{name}"


class _Canon:
    """One walk over a schema; ``form`` returns the canonical JSON value (keys in the spec's order), which
    ``text`` dumps without whitespace."""

    def __init__(self, detailed: bool) -> None:
        self.detailed = detailed
        self.defined: set[str] = set()

    def form(self, schema: Any, namespace: str | None) -> Any:
        if isinstance(schema, str):
            return schema if schema in PRIMITIVES else fullname(schema, namespace)
        if isinstance(schema, list):
            return [self.form(branch, namespace) for branch in schema]
        if not isinstance(schema, Mapping):
            raise SchemaError(f"not an Avro schema: {schema!r}")
        typ = schema.get("type")
        if typ is None:
            raise SchemaError(f"Avro schema object without 'type': {schema!r}")
        if not isinstance(typ, str):
            # {"type": {...}} or {"type": [...]}: the inner schema is the schema.
            return self.form(typ, namespace)
        details = self._details(schema)
        if typ in PRIMITIVES:
            return {"type": typ, **details} if details else typ
        if typ in NAMED:
            return self._named(schema, typ, namespace, details)
        if typ in ("array", "map"):
            inner = "items" if typ == "array" else "values"
            return {"type": typ, inner: self.form(schema[inner], namespace), **details}
        # A reference to a named type written as {"type": "a.b.Name"}.
        if details:
            raise SchemaError(f"logical type on a named-type reference: {schema!r}")
        return self.form(typ, namespace)

    def _named(self, schema: Mapping[str, Any], typ: str, namespace: str | None, details: dict[str, Any]
               ) -> dict[str, Any]:
        name = schema.get("name")
        if not isinstance(name, str) or not name:
            raise SchemaError(f"named Avro type without a name: {schema!r}")
        own_ns = schema.get("namespace")
        full = fullname(name, own_ns if own_ns is not None else namespace)
        inner_ns = full.rpartition(".")[0] or None
        if full in self.defined:
            # A second definition of a name is invalid Avro; a reference is just the name.
            raise SchemaError(f"Avro type {full!r} is defined twice")
        self.defined.add(full)
        out: dict[str, Any] = {"name": full, "type": "record" if typ == "error" else typ}
        if typ in ("record", "error"):
            out["fields"] = [{"name": field["name"], "type": self.form(field["type"], inner_ns),
                              **self._cdx_attributes(field)} for field in schema.get("fields", [])]
        elif typ == "enum":
            out["symbols"] = list(schema["symbols"])
        else:  # fixed
            out["size"] = int(schema["size"])
        return {**out, **details}

    def _details(self, schema: Mapping[str, Any]) -> dict[str, Any]:
        if not self.detailed:
            return {}
        return {**{k: schema[k] for k in _DETAIL_ORDER if k in schema}, **self._cdx_attributes(schema)}

    def _cdx_attributes(self, item: Mapping[str, Any]) -> dict[str, Any]:
        return {k: item[k] for k in sorted(item) if k.startswith("cdx.")} if self.detailed else {}

    def text(self, schema: Any) -> str:
        return json.dumps(self.form(load_json(schema), None), ensure_ascii=False, separators=(",", ":"))


def parsing_canonical_form(schema: Any) -> str:
    """The Parsing Canonical Form of ``schema`` (a JSON string or the decoded JSON value)."""
    return _Canon(detailed=False).text(schema)


def detailed_form(schema: Any) -> str:
    """The canonical form plus logical-type and ``cdx.*`` attributes (cdx's conflict check only)."""
    return _Canon(detailed=True).text(schema)


def fingerprint(schema: Any) -> bytes:
    """The 8-byte CRC-64-AVRO fingerprint of the schema's canonical form, little-endian as on the wire."""
    return rabin64(parsing_canonical_form(schema).encode()).to_bytes(8, "little")


def fingerprint_hex(schema: Any) -> str:
    """``fingerprint(schema).hex()``: the schemas topic key."""
    return fingerprint(schema).hex()
