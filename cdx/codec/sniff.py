"""Decode a record of any cdx topic without knowing its encoding: what ``cdx topic tail`` shows.

``AnyDecoder.decode(topic, data)`` looks at the first bytes: ``C3 01`` is Avro single-object
encoding (schema from the schemas topic), ``00`` + 4 bytes the Confluent registry wire format
(needs the topology's ``schema_registry``), ``{`` Kafka Connect JSON (or any other JSON, e.g. the
dead-letter, state and schemas topics), anything else UTF-8 text or, failing that, hex.
``to_json`` turns decoded values into JSON-ready ones (decimals as strings, times in ISO-8601,
UUIDs as text, bytes in base64).
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from cdx.codec.codec import AVRO, AVRO_REGISTRY, CONNECT_JSON, Codec
from cdx.codec.errors import DecodeError
from cdx.codec.single_object import MAGIC

TEXT = "text"
JSON = "json"
BINARY = "binary"


def encoding_of(data: bytes | None) -> str | None:
    """The encoding a record's bytes are in (``None`` for a null key/value)."""
    if data is None:
        return None
    if data[:2] == MAGIC:
        return AVRO
    if len(data) >= 5 and data[0] == 0:
        return AVRO_REGISTRY
    if data.lstrip()[:1] == b"{":
        return CONNECT_JSON if data.startswith(b'{"schema":') else JSON
    try:
        data.decode()
        return TEXT
    except UnicodeDecodeError:
        return BINARY


class AnyDecoder:
    """Decodes single-object, registry and Connect JSON records, plus plain JSON/text (see module doc).

    Codecs are made on first use by ``make(encoding)``; ``make`` may raise ``DecodeError`` (e.g. no
    registry configured) and the record is then reported, not decoded.
    """

    def __init__(self, make: Callable[[str], Codec]) -> None:
        self._make = make
        self._codecs: dict[str, Codec] = {}

    def _codec(self, encoding: str) -> Codec:
        codec = self._codecs.get(encoding)
        if codec is None:
            codec = self._codecs[encoding] = self._make(encoding)
        return codec

    def decode(self, topic: str, data: bytes | None, *, is_key: bool = False) -> tuple[str | None, Any]:
        """``(encoding, decoded value)``; a null stays ``None``."""
        enc = encoding_of(data)
        if data is None or enc is None:
            return None, None
        if enc in (AVRO, AVRO_REGISTRY, CONNECT_JSON):
            codec = self._codec(enc)
            return enc, codec.decode_key(topic, data) if is_key else codec.decode_value(topic, data)
        if enc == JSON:
            try:
                return enc, json.loads(data)
            except json.JSONDecodeError as e:
                raise DecodeError(f"record on {topic} starts like JSON but is not: {e}") from None
        if enc == TEXT:
            return enc, data.decode()
        return enc, data.hex()


def to_json(v: Any) -> Any:
    """A decoded value as plain JSON types (see module doc)."""
    if isinstance(v, Mapping):
        return {str(k): to_json(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [to_json(x) for x in v]
    if isinstance(v, decimal.Decimal):
        return str(v)
    if isinstance(v, dt.datetime | dt.date):
        return v.isoformat()
    if isinstance(v, uuid.UUID):
        return str(v)
    if isinstance(v, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(v)).decode()
    return v


def key_matches(key: Any, wanted: str) -> bool:
    """True if a decoded key matches ``--key`` text: a JSON object (equal fields), ``f=v[,f=v]``, or the
    value of a one-field key (compared as text)."""
    if isinstance(key, Mapping):
        want: dict[str, Any] | None = None
        text = wanted.strip()
        if text.startswith("{"):
            try:
                want = json.loads(text)
            except json.JSONDecodeError:
                want = None
        elif "=" in text:
            want = dict(part.split("=", 1) for part in text.split(","))
        plain = to_json(key)
        if want is not None:
            folded = {str(k).casefold(): v for k, v in plain.items()}
            return all(str(folded.get(str(k).casefold())) == str(v) for k, v in want.items())
        return len(plain) == 1 and str(next(iter(plain.values()))) == text
    return str(to_json(key)) == wanted
