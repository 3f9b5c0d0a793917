"""Kafka Connect JSON with embedded schemas: what ``JsonConverter`` (``schemas.enable=true``) reads and writes.

Every key and value is ``{"schema": <Connect schema>, "payload": <value>}`` (UTF-8 JSON, no
whitespace); a tombstone is a null Kafka value. Schemas are converted from the Avro schemas cdx
builds (``connect_schema.to_connect``) and back (``to_avro``), so decoding yields the same Python
values as the Avro codecs: ``Decimal`` (Connect Decimal, base64 of the unscaled two's-complement
bytes, or a JSON number as ``decimal.format=NUMERIC`` writes), ``date``, aware UTC ``datetime``,
``uuid.UUID``. Values are normalized exactly as for Avro (``prepare``), so equal keys give equal
bytes (same partition, compaction works). No registry and no schemas topic are involved.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import math
import threading
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from cdx.codec import connect_schema as cs
from cdx.codec.base import Codec, SchemaLike
from cdx.codec.binary import read_body, write_body
from cdx.codec.errors import DecodeError, EncodeError, SchemaError
from cdx.codec.naming import avro_name
from cdx.codec.schema import AvroSchema

EPOCH_DATE = dt.date(1970, 1, 1)
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_SCHEMA_PREFIX = '{"schema":'
_PAYLOAD_SEP = ',"payload":'
_decoder = json.JSONDecoder()


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


class ConnectJsonCodec(Codec):
    """``Codec`` writing and reading Kafka Connect JSON with embedded schemas (thread-safe)."""

    def __init__(self) -> None:
        self._connect: dict[str, tuple[dict[str, Any], str]] = {}   # Avro identity -> (connect, its JSON)
        self._avro: dict[str, AvroSchema] = {}                      # Connect schema JSON -> Avro
        self._lock = threading.Lock()

    # -- encode ---------------------------------------------------------------------------------

    def _connect_schema(self, schema: AvroSchema) -> tuple[dict[str, Any], str]:
        hit = self._connect.get(schema.identity)
        if hit is None:
            connect = cs.to_connect(schema.to_dict())
            hit = (connect, _dumps(connect))
            with self._lock:
                self._connect[schema.identity] = hit
        return hit

    def _encode(self, topic: str, schema: SchemaLike, datum: Mapping[str, Any], is_key: bool) -> bytes:
        s, what = AvroSchema.of(schema), "key" if is_key else "value"
        connect, text = self._connect_schema(s)
        prepared = s.prepare(datum) if s.prepare is not None else datum
        try:
            payload = _to_json(connect, prepared, what)
            return (_SCHEMA_PREFIX + text + _PAYLOAD_SEP + _dumps(payload) + "}").encode()
        except (TypeError, ValueError) as e:
            raise EncodeError(f"{topic} {what} does not fit schema {s.name}: {e}") from None

    # -- decode ---------------------------------------------------------------------------------

    def _split(self, topic: str, data: bytes) -> tuple[str, Any, Any]:
        """(schema JSON text, schema, payload) of one record."""
        try:
            text = bytes(data).decode()
        except UnicodeDecodeError:
            raise DecodeError(f"record on {topic} is not Kafka Connect JSON (not UTF-8; starts with"
                              f" {bytes(data[:5]).hex()!r}): is the topic written in another encoding?") from None
        if text.startswith(_SCHEMA_PREFIX):  # compact, as cdx and JsonConverter write: schema text is the cache key
            try:
                schema, end = _decoder.raw_decode(text, len(_SCHEMA_PREFIX))
                if text.startswith(_PAYLOAD_SEP, end):
                    payload, stop = _decoder.raw_decode(text, end + len(_PAYLOAD_SEP))
                    if text[stop:] == "}":
                        return text[len(_SCHEMA_PREFIX):end], schema, payload
            except json.JSONDecodeError:
                pass
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            raise DecodeError(f"record on {topic} is not Kafka Connect JSON ({e}; starts with {text[:20]!r})") from None
        if not isinstance(doc, dict) or "schema" not in doc or "payload" not in doc:
            raise DecodeError(f"record on {topic} is JSON without the Connect envelope {{schema, payload}}:"
                              " written by JsonConverter with schemas.enable=false?")
        return _dumps(doc["schema"]), doc["schema"], doc["payload"]

    def _writer(self, topic: str, schema_text: str, schema: Any) -> AvroSchema:
        hit = self._avro.get(schema_text)
        if hit is None:
            if not isinstance(schema, dict):
                raise DecodeError(f"record on {topic} has no Connect schema (schema is {schema!r})")
            try:
                hit = AvroSchema.of(cs.to_avro(schema))
            except SchemaError as e:
                raise DecodeError(f"record on {topic}: {e}") from None
            with self._lock:
                self._avro[schema_text] = hit
        return hit

    def _decode(self, topic: str, data: bytes, reader: SchemaLike | None, is_key: bool) -> Any:
        text, schema, payload = self._split(topic, data)
        writer = self._writer(topic, text, schema)
        value = _from_json(schema, payload, topic)
        if reader is None:
            return value
        r = AvroSchema.of(reader)
        if r.identity == writer.identity:
            return value
        try:
            return read_body(write_body(writer, value), writer, r)
        except EncodeError as e:
            raise DecodeError(f"record on {topic}: {e}") from None

    def writer_schema(self, topic: str, data: bytes, is_key: bool = False) -> AvroSchema:
        text, schema, _ = self._split(topic, data)
        return self._writer(topic, text, schema)


# -- values ---------------------------------------------------------------------------------------

def _micros(v: Any) -> int:
    if isinstance(v, dt.datetime):
        d = v - EPOCH
        return (d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds
    return int(v)


def _to_json(schema: Mapping[str, Any], v: Any, path: str) -> Any:
    """A prepared value (``prepare`` output: union tuples, decimal bytes) as Connect JSON payload."""
    if isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], str):
        v = v[1]
    if v is None:
        if not schema.get("optional"):
            raise ValueError(f"{path}: null in a required field")
        return None
    typ, name = schema["type"], schema.get("name")
    if typ == "struct":
        if not isinstance(v, Mapping):
            raise TypeError(f"{path}: a record needs a dict, got {type(v).__name__}")
        return {f["field"]: _to_json(f, v.get(f["field"]), f"{path}.{f['field']}") for f in schema["fields"]}
    if name == cs.DATE:
        return (v - EPOCH_DATE).days if isinstance(v, dt.date) else int(v)
    if name == cs.MICRO_TIMESTAMP:
        return _micros(v)
    if name == cs.TIMESTAMP:
        return _micros(v) // 1000 if isinstance(v, dt.datetime) else int(v)
    if typ == "bytes":
        if not isinstance(v, bytes | bytearray | memoryview):
            raise TypeError(f"{path}: bytes needed, got {type(v).__name__}")
        return base64.b64encode(bytes(v)).decode()
    _check_primitive(typ, v, path)
    if typ in ("float32", "float64") and isinstance(v, float) and not math.isfinite(v):
        return _NON_FINITE[repr(v)]  # JSON has no NaN/Infinity: Jackson's strings, read back by _from_json
    if typ == "array":
        return [_to_json(schema["items"], x, path + "[]") for x in v]
    if typ == "map":
        return {str(k): _to_json(schema["values"], x, f"{path}[{k}]") for k, x in v.items()}
    return v


_NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}
"""How non-finite doubles travel: as Jackson (Kafka Connect's JSON library) writes them by default."""

_PY_TYPES: dict[str, Any] = {"int8": int, "int16": int, "int32": int, "int64": int, "float32": (int, float),
                             "float64": (int, float), "boolean": bool, "string": str, "array": (list, tuple),
                             "map": Mapping}


def _check_primitive(typ: str, v: Any, path: str) -> None:
    want = _PY_TYPES.get(typ)
    if want is None:
        raise TypeError(f"{path}: Connect type {typ!r} is not supported")
    if not isinstance(v, want) or (typ.startswith("int") and isinstance(v, bool)):
        raise TypeError(f"{path}: {typ} needed, got {type(v).__name__} {v!r}")


def _decimal(schema: Mapping[str, Any], v: Any) -> decimal.Decimal:
    """Exact: the arithmetic runs in a context wide enough for every digit (the default context's 28 digits
    rounded a 29-digit value)."""
    params = schema.get("parameters") or {}
    scale = int(params.get("scale", 0))
    if isinstance(v, str):
        unscaled = int.from_bytes(base64.b64decode(v), "big", signed=True)
        ctx = decimal.Context(prec=max(len(str(abs(unscaled))), 28) + 4)
        return decimal.Decimal(unscaled).scaleb(-scale, context=ctx)
    d = decimal.Decimal(str(v))
    ctx = decimal.Context(prec=max(len(d.as_tuple().digits) + abs(scale), 28) + 4)
    return d.quantize(decimal.Decimal(1).scaleb(-scale, context=ctx), context=ctx)


def _zoned(v: str) -> dt.datetime:
    out = dt.datetime.fromisoformat(v.replace("Z", "+00:00"))
    return (out if out.tzinfo else out.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)


_NAMED_READERS: dict[str, Callable[[Mapping[str, Any], Any], Any]] = {
    cs.DECIMAL: _decimal,
    cs.DATE: lambda _s, v: EPOCH_DATE + dt.timedelta(days=int(v)),
    cs.DBZ_DATE: lambda _s, v: EPOCH_DATE + dt.timedelta(days=int(v)),
    cs.TIMESTAMP: lambda _s, v: EPOCH + dt.timedelta(milliseconds=int(v)),
    cs.DBZ_TIMESTAMP: lambda _s, v: EPOCH + dt.timedelta(milliseconds=int(v)),
    cs.MICRO_TIMESTAMP: lambda _s, v: EPOCH + dt.timedelta(microseconds=int(v)),
    cs.ZONED_TIMESTAMP: lambda _s, v: _zoned(v),
    cs.UUID: lambda _s, v: uuid.UUID(v),
}


def _from_json(schema: Mapping[str, Any], v: Any, topic: str) -> Any:
    """A Connect JSON payload as Python values (as the Avro codecs decode them)."""
    if v is None:
        return None
    typ = schema.get("type")
    if typ == "struct":
        if not isinstance(v, dict):
            raise DecodeError(f"record on {topic}: struct payload is {type(v).__name__}, not an object")
        return {avro_name(f["field"]): _from_json(f, v.get(f["field"]), topic) for f in schema.get("fields", [])}
    reader = _NAMED_READERS.get(schema.get("name") or "")
    try:
        if reader is not None:
            return reader(schema, v)
        if typ == "bytes":
            return base64.b64decode(v)
        if typ in ("float32", "float64") and isinstance(v, str):
            return float(v)  # "NaN", "Infinity", "-Infinity"
        if typ == "array":
            return [_from_json(schema["items"], x, topic) for x in v]
        if typ == "map":
            return {k: _from_json(schema["values"], x, topic) for k, x in v.items()}
    except (ValueError, TypeError, decimal.InvalidOperation) as e:
        raise DecodeError(f"record on {topic}: bad {schema.get('name') or typ} value {v!r}: {e}") from None
    return v
