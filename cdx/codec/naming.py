"""Deterministic Avro names: namespaces from topics/tables, field names from column names."""

from __future__ import annotations

import re

from cdx.codec.errors import SchemaError

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_BAD = re.compile(r"[^A-Za-z0-9_]")

KEY = "Key"
VALUE = "Value"
ENVELOPE = "Envelope"
SOURCE = "Source"
SOURCE_NAMESPACE = "cdx"


def avro_name(name: str) -> str:
    """``name`` made into a valid Avro name: every other character becomes ``_``, a leading digit gets ``_``.

    The same input always gives the same output; valid names are returned unchanged.
    """
    if not name:
        raise SchemaError("an empty name cannot be an Avro name")
    if _NAME.match(name):  # already a valid Avro name: [A-Za-z_][A-Za-z0-9_]*
        return name
    out = _BAD.sub("_", name)
    if out[0].isdigit():
        out = "_" + out
    return out


def namespace_for(topic_or_table: str, generation: int = 0) -> str:
    """The Avro namespace of a topic or table (``hq.dbo.RetailTransactionTable``).

    Each dot-separated part is made a valid Avro name (``avro_name``); empty parts are dropped.
    ``generation`` > 0 adds a last part ``g<N>``: used only when a changed schema would otherwise
    have the same fingerprint as an older, different one (see ``SchemaStore.register_table``).
    Avro schema resolution matches records by their unqualified name, so generations stay readable
    by each other.
    """
    if generation < 0:
        raise SchemaError(f"schema generation must be >= 0, not {generation}")
    parts = [avro_name(p) for p in topic_or_table.split(".") if p]
    if not parts:
        raise SchemaError(f"cannot make an Avro namespace from {topic_or_table!r}")
    if generation:
        parts.append(f"g{generation}")
    return ".".join(parts)
