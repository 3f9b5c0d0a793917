"""``AvroSchema``: one Avro schema, parsed once, with its canonical form and fingerprint.

Build them with ``AvroSchema.of(json_or_dict)``: equal schemas give the same (cached) object, so
callers can keep and pass them around cheaply. Never mutate what ``to_dict()`` returns into the
object: it is a fresh copy.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import fastavro
from fastavro.schema import SchemaParseException, UnknownType

from cdx.codec.canonical import detailed_form, fullname, load_json, parsing_canonical_form, rabin64
from cdx.codec.errors import SchemaError
from cdx.codec.prepare import Prepare, compile_prepare

_CACHE_MAX = 4096


class AvroSchema:
    """An immutable, parsed Avro schema.

    - ``text``: the schema JSON as written (compact, original key order): what is published;
    - ``canonical``: its Parsing Canonical Form; ``fingerprint``: 8 bytes, CRC-64-AVRO of it,
      little-endian (as in single-object encoding); ``fingerprint_hex``: the schemas-topic key;
    - ``detailed``: canonical form plus logical-type and ``cdx.*`` attributes (conflict check);
    - ``parsed``: fastavro's parsed schema; ``prepare``: value normalizer (``prepare.py``) or None.
    """

    __slots__ = ("canonical", "detailed", "fingerprint", "identity", "parsed", "prepare", "text")

    text: str
    identity: str
    canonical: str
    detailed: str
    fingerprint: bytes
    parsed: Any
    prepare: Prepare | None

    def __init__(self, schema: Any, *, decoded: bool = False) -> None:
        """``schema``: JSON text, or (with ``decoded=True``) the decoded JSON value. Prefer ``AvroSchema.of``."""
        obj = schema if decoded else load_json(schema)
        try:
            parsed = fastavro.parse_schema(obj)
        except (SchemaParseException, UnknownType, KeyError, TypeError, ValueError) as e:
            raise SchemaError(f"invalid Avro schema: {e}: {str(schema)[:300]}") from None
        self.text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
        self.identity = _identity(obj)
        self.canonical = parsing_canonical_form(obj)
        self.detailed = detailed_form(obj)
        self.fingerprint = rabin64(self.canonical.encode()).to_bytes(8, "little")
        self.parsed = parsed
        self.prepare = compile_prepare(obj)

    @property
    def fingerprint_hex(self) -> str:
        return self.fingerprint.hex()

    @property
    def name(self) -> str | None:
        """Full name of a named top-level schema (``ns.Envelope``), else None."""
        obj = self.to_dict()
        return fullname(obj["name"], obj.get("namespace")) if isinstance(obj, dict) and "name" in obj else None

    def to_dict(self) -> Any:
        """A fresh copy of the schema's JSON value (usually a dict)."""
        return json.loads(self.text)

    @classmethod
    def of(cls, schema: AvroSchema | Mapping[str, Any] | list[Any] | str | bytes) -> AvroSchema:
        """The (cached) ``AvroSchema`` for a schema given as JSON text, decoded JSON, or an ``AvroSchema``."""
        if isinstance(schema, AvroSchema):
            return schema
        obj = load_json(schema)
        key = _identity(obj)
        with _lock:
            hit = _cache.get(key)
            if hit is not None:
                _cache.move_to_end(key)
                return hit
        made = cls(obj, decoded=True)
        with _lock:
            _cache[key] = made
            if len(_cache) > _CACHE_MAX:
                _cache.popitem(last=False)
        return made

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AvroSchema) and self.identity == other.identity

    def __hash__(self) -> int:
        return hash(self.identity)

    def __repr__(self) -> str:
        return f"AvroSchema({self.name or self.canonical[:60]!s}, fp={self.fingerprint_hex})"


def _identity(obj: Any) -> str:
    """The schema JSON with sorted keys: equal for the same schema whatever its key order/whitespace."""
    return json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


_cache: OrderedDict[str, AvroSchema] = OrderedDict()
_lock = threading.Lock()
