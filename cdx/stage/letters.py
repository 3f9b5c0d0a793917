"""Dead letters: the ONE format of ``<prefix>._dlq``, written by every stage and read by one reader.

A dead letter is one Kafka record (:func:`make_letter` gives its key, value and headers):

- **key**: the channel (or register) id when known, else the source topic, else the table, else the
  component, as UTF-8: one database's letters stay on one partition, in order;
- **headers** (UTF-8 text):

  ======================================  =====================================================
  ``cdx.letter.version``                  ``1`` (always)
  ``cdx.component``                       who wrote it: :data:`COMPONENTS` (always)
  ``cdx.error``                           the reason, first :data:`ERROR_HEADER_LIMIT` chars (always)
  ``cdx.error.kind``                      :data:`ERROR_KINDS` (always)
  ``cdx.channel``                         channel / register id, when known
  ``cdx.table``                           the table, when known
  ``cdx.source.topic|partition|offset``   the Kafka record the letter comes from, when there is one
  ======================================  =====================================================

- **value**: one JSON document ``{"version": 1, "component", "error", "error_kind", "channel",
  "table", "key", "op", "source": {"topic", "partition", "offset"} | null, "record": {"key_b64",
  "value_b64", "headers": [[name, value_b64], ...], "timestamp"} | null, "ts_ms", "extra": {...}}``.
  ``key`` is the row's key with JSON-safe values (:func:`json_safe`); ``record`` is the origin
  Kafka record byte for byte (enough to replay it); ``extra`` holds what only one component has
  (the sink: ``kind``, ``hq``, ``subjob``, ``replay_of``, ``attempt``; the upload side: ``counter``,
  ``topic``, ``row``). The full error is in the value, the header holds its start. A letter that
  would exceed :data:`MAX_LETTER_BYTES` leaves the record's value out (``extra["record_omitted"]``
  says so; the ``source`` position still finds the record) rather than stall its stage.

:func:`parse_letter` reads any record of the topic: letters of this format, and the three formats
written before it (sink JSON letters, the upload/capture JSON letters with ``cdx.kind`` headers,
the router's raw source record with ``cdx.component`` headers), so topics written before an upgrade
stay readable. Nothing here imports a connector, a stream or the CLI.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

LETTER_VERSION = 1
ERROR_HEADER_LIMIT = 1000
MAX_LETTER_BYTES = 900_000
"""Largest letter value written with the origin record's value in it: the dead-letter topic keeps the
broker's default ``max.message.bytes`` (1 MiB) and producers their default ``message.max.bytes``
(1,000,000 bytes for key, value and headers), and the value holds the record in base64."""
COMPONENTS = ("capture", "router", "sink", "upload", "upload-sink", "offline")
"""Who writes letters: HQ capture, the router, channel/register sinks, the channel upload, the HQ
upload sink, the offline-register sync."""
ERROR_KINDS = ("skippable", "fatal", "oversize", "gap", "conflict")
"""Why: a record that cannot be applied (skipped), a fatal error, a record over the size limit,
counters given up (upload gap), an offline-sync conflict."""
LEGACY_COMPONENTS = {"channel-upload": "upload", "hq-upload-sink": "upload-sink", "offline-sync": "offline",
                     "upload-gap": "upload"}
"""Component names of letters written before version 1 -> their name now."""
_LEGACY_ERROR_KINDS = {"upload-gap": "gap", "offline-sync": "conflict", "capture": "oversize"}

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True)
class Position:
    """A Kafka record's place: topic, partition, offset."""

    topic: str
    partition: int
    offset: int

    def to_json(self) -> dict[str, Any]:
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset}


@dataclass(frozen=True)
class OriginRecord:
    """The Kafka record a letter stands for, byte for byte (``timestamp`` in ms, None: unknown)."""

    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()
    timestamp: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"key_b64": _b64(self.key), "value_b64": _b64(self.value),
                "headers": [[k, _b64(v)] for k, v in self.headers], "timestamp": self.timestamp or None}


def origin_of(msg: Any) -> OriginRecord:
    """The :class:`OriginRecord` of a consumed confluent-kafka message (key, value, headers, timestamp)."""
    raw = msg.headers() or ()
    pairs = raw.items() if isinstance(raw, Mapping) else raw
    headers = tuple((str(k), v.encode() if isinstance(v, str) else v) for k, v in pairs)
    ts_type, ts = msg.timestamp()
    return OriginRecord(msg.key(), msg.value(), headers, ts if ts_type and ts > 0 else None)


@dataclass
class Letter:
    """A parsed dead letter (``version`` 0: written before the format had a version)."""

    component: str
    error: str
    error_kind: str = "skippable"
    channel: str | None = None
    table: str | None = None
    key: Any = None
    op: str | None = None
    source: Position | None = None
    record: OriginRecord | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    ts_ms: int = 0
    version: int = LETTER_VERSION

    def to_json(self) -> dict[str, Any]:
        """The value document of this letter (see module docstring)."""
        return {"version": LETTER_VERSION, "component": self.component, "error": self.error,
                "error_kind": self.error_kind, "channel": self.channel, "table": self.table, "key": self.key,
                "op": self.op, "source": self.source.to_json() if self.source else None,
                "record": self.record.to_json() if self.record else None, "ts_ms": self.ts_ms,
                "extra": self.extra}


def json_safe(value: Any) -> Any:
    """``value`` with JSON-safe leaves: bytes as base64, decimals and UUIDs as strings, dates ISO 8601."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, Decimal | uuid.UUID):
        return str(value)
    return str(value)


def make_letter(component: str, error: str, *, error_kind: str = "skippable", channel: str | None = None,
                table: str | None = None, key: Any = None, op: str | None = None, source: Position | None = None,
                record: OriginRecord | None = None, extra: Mapping[str, Any] | None = None,
                now_ms: int | None = None, max_bytes: int = MAX_LETTER_BYTES) -> tuple[bytes, bytes, Headers]:
    """``(key, value, headers)`` of one dead letter, ready for a producer (format: module docstring).

    ``component`` is one of :data:`COMPONENTS` and ``error_kind`` one of :data:`ERROR_KINDS`
    (``ValueError`` otherwise); ``key`` and ``extra`` are made JSON-safe. A value over ``max_bytes``
    leaves the origin record's value out (``extra["record_omitted"]`` says so)."""
    if component not in COMPONENTS:
        raise ValueError(f"unknown dead-letter component {component!r} (one of {', '.join(COMPONENTS)})")
    if error_kind not in ERROR_KINDS:
        raise ValueError(f"unknown dead-letter error kind {error_kind!r} (one of {', '.join(ERROR_KINDS)})")
    letter = Letter(component, error, error_kind, channel, table, json_safe(key), op, source, record,
                    json_safe(dict(extra or {})), int(time.time() * 1000) if now_ms is None else now_ms)
    headers: Headers = [("cdx.letter.version", str(LETTER_VERSION).encode()),
                        ("cdx.component", component.encode()),
                        ("cdx.error", error[:ERROR_HEADER_LIMIT].encode("utf-8", "replace")),
                        ("cdx.error.kind", error_kind.encode())]
    if channel is not None:
        headers.append(("cdx.channel", channel.encode("utf-8", "replace")))
    if table is not None:
        headers.append(("cdx.table", table.encode("utf-8", "replace")))
    if source is not None:
        headers += [("cdx.source.topic", source.topic.encode()),
                    ("cdx.source.partition", str(source.partition).encode()),
                    ("cdx.source.offset", str(source.offset).encode())]
    kafka_key = channel or (source.topic if source else None) or table or component
    return kafka_key.encode("utf-8", "replace"), _fitted(letter, max_bytes), headers


def _fitted(letter: Letter, max_bytes: int) -> bytes:
    """The value of ``letter``; when over ``max_bytes``, the origin record's value is left out (said in
    ``extra["record_omitted"]``): a letter that cannot be written would stall its stage."""
    value = _encode(letter)
    rec = letter.record
    if len(value) <= max_bytes or rec is None or rec.value is None:
        return value
    letter.record = OriginRecord(rec.key, None, rec.headers, rec.timestamp)
    letter.extra["record_omitted"] = (f"the record's value ({len(rec.value):,} bytes) is left out: the letter"
                                      f" would exceed {max_bytes:,} bytes")
    return _encode(letter)


def _encode(letter: Letter) -> bytes:
    return json.dumps(letter.to_json(), ensure_ascii=False, separators=(",", ":")).encode("utf-8", "replace")


# ------------------------------------------------------------------------------ reading
def parse_letter(key: bytes | None, value: bytes | None, headers: Any) -> Letter:
    """The letter in one record of the dead-letter topic, whichever version wrote it (``headers``: a
    list of pairs or a dict, values bytes or text). Never raises: what cannot be read becomes a letter
    of component ``unknown``."""
    hdr = _headers(headers)
    doc = _json(value)
    try:
        if "cdx.letter.version" in hdr and isinstance(doc, dict) and "component" in doc:
            return _from_v1(doc, hdr)
        if "cdx.component" in hdr:  # legacy router: the raw source record, the reason in headers
            return Letter(hdr["cdx.component"], hdr.get("cdx.error", ""), "skippable",
                          hdr.get("cdx.channel") or None, hdr.get("cdx.table") or None, source=_header_source(hdr),
                          record=OriginRecord(key, value), version=0)
        if isinstance(doc, dict) and "error" in doc:
            if "group_topic" in doc and doc.get("kind") in ("channel", "offline"):
                return _from_legacy_sink(doc)
            return _from_legacy_upload(doc, hdr)
    except (TypeError, ValueError, KeyError, AttributeError):
        pass  # a document of the right shape with fields of the wrong types: read as unknown below
    return Letter("unknown", hdr.get("cdx.error", ""), "skippable", hdr.get("cdx.channel") or None,
                  hdr.get("cdx.table") or None, source=_header_source(hdr), record=OriginRecord(key, value),
                  version=0)


def _from_v1(doc: dict[str, Any], hdr: Mapping[str, str]) -> Letter:
    return Letter(str(doc.get("component") or hdr.get("cdx.component") or "unknown"),
                  str(doc.get("error") if doc.get("error") is not None else hdr.get("cdx.error", "")),
                  str(doc.get("error_kind") or hdr.get("cdx.error.kind") or "skippable"), doc.get("channel"),
                  doc.get("table"), doc.get("key"), doc.get("op"), _position(doc.get("source")),
                  _record(doc.get("record")), dict(doc.get("extra") or {}), _int(doc.get("ts_ms")) or 0,
                  _int(doc.get("version")) or LETTER_VERSION)


def _from_legacy_sink(doc: dict[str, Any]) -> Letter:
    """A channel sink's JSON letter written before version 1."""
    schema, table = doc.get("schema"), doc.get("table")
    extra = {"kind": doc["kind"], "hq": doc.get("source"), "subjob": doc.get("subjob")}
    extra.update({k: doc[k] for k in ("replay_of", "attempt") if k in doc})
    source = None
    if doc.get("partition") is not None and doc.get("offset") is not None:
        source = Position(str(doc["group_topic"]), int(doc["partition"]), int(doc["offset"]))
    return Letter("sink", str(doc.get("error") or ""), "skippable", doc.get("channel"),
                  f"{schema}.{table}" if schema and table else table, doc.get("key"), doc.get("op"), source,
                  _record(doc.get("record")), extra, _int(doc.get("ts_ms")) or 0, 0)


def _from_legacy_upload(doc: dict[str, Any], hdr: Mapping[str, str]) -> Letter:
    """An upload-side or capture JSON letter written before version 1 (``kind`` the component)."""
    old = str(doc.get("kind") or hdr.get("cdx.kind") or "unknown")
    error = str(doc.get("error") or "")
    kind = _LEGACY_ERROR_KINDS.get(old, "oversize" if "exceeds kafka.max_message_bytes" in error else "skippable")
    source = None
    if doc.get("topic") and doc.get("partition") is not None and doc.get("offset") is not None:
        source = Position(str(doc["topic"]), int(doc["partition"]), int(doc["offset"]))
    capture = old == "capture"
    extra = {k: doc[k] for k in ("counter", "row") if doc.get(k) is not None and not (capture and k == "row")}
    if doc.get("topic") and source is None:
        extra["topic"] = doc["topic"]
    record = _record(doc.get("record"))
    return Letter(LEGACY_COMPONENTS.get(old, old), error, kind, doc.get("channel") or None, doc.get("table"),
                  doc.get("row") if capture else _counter_key(doc.get("counter")), None, source,
                  record if record and (record.key or record.value) else None, extra, _int(doc.get("ts_ms")) or 0, 0)


def _counter_key(counter: Any) -> dict[str, Any] | None:
    return {"counter": counter} if counter is not None else None


def _headers(headers: Any) -> dict[str, str]:
    pairs: Iterable[Any] = headers.items() if isinstance(headers, Mapping) else headers or ()
    return {str(k): v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v or "") for k, v in pairs}


def _json(value: bytes | None) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except (ValueError, UnicodeDecodeError):
        return None


def _header_source(hdr: Mapping[str, str]) -> Position | None:
    return _position({"topic": hdr.get("cdx.source.topic") or None, "partition": hdr.get("cdx.source.partition"),
                      "offset": hdr.get("cdx.source.offset")})


def _position(doc: Any) -> Position | None:
    if not isinstance(doc, Mapping) or doc.get("topic") is None:
        return None
    p, o = _int(doc.get("partition")), _int(doc.get("offset"))
    return Position(str(doc["topic"]), p, o) if p is not None and o is not None else None


def _record(doc: Any) -> OriginRecord | None:
    if not isinstance(doc, Mapping):
        return None
    headers = tuple((str(h[0]), _unb64(h[1])) for h in doc.get("headers") or ()
                    if isinstance(h, Sequence) and not isinstance(h, str) and len(h) == 2)
    return OriginRecord(_unb64(doc.get("key_b64")), _unb64(doc.get("value_b64")), headers,
                        _int(doc.get("timestamp")) or None)


def _b64(data: bytes | None) -> str | None:
    return base64.b64encode(data).decode("ascii") if data is not None else None


def _unb64(text: Any) -> bytes | None:
    if not isinstance(text, str):
        return None
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        return None


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    try:
        return int(str(value)) if value not in (None, "") else None
    except ValueError:
        return None
