"""The one dead-letter format (cdx.stage.letters): what make_letter writes, that parse_letter reads it
back for every component (property test), and that letters written before the format (legacy
fixtures, built here in the exact shapes the earlier writers produced) stay readable. No Kafka here."""

from __future__ import annotations

import base64
import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdx.stage.letters import (
    COMPONENTS,
    ERROR_HEADER_LIMIT,
    ERROR_KINDS,
    Letter,
    OriginRecord,
    Position,
    json_safe,
    make_letter,
    parse_letter,
)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# ------------------------------------------------------------------ what is written
def test_headers_and_value_of_a_letter() -> None:
    key, value, headers = make_letter(
        "sink", "x" * 1500, channel="c1", table="dbo.ITEMS", key={"ID": Decimal("1.50"), "D": dt.date(2024, 1, 2)},
        op="u", source=Position("p.group.g1", 2, 41), record=OriginRecord(b"k", b"v", (("h", b"\xff"),), 1700),
        extra={"kind": "channel", "raw": b"\x00"}, now_ms=5)
    assert key == b"c1"
    hdr = dict(headers)
    assert hdr == {"cdx.letter.version": b"1", "cdx.component": b"sink", "cdx.error": b"x" * ERROR_HEADER_LIMIT,
                   "cdx.error.kind": b"skippable", "cdx.channel": b"c1", "cdx.table": b"dbo.ITEMS",
                   "cdx.source.topic": b"p.group.g1", "cdx.source.partition": b"2", "cdx.source.offset": b"41"}
    doc = json.loads(value)
    assert doc == {"version": 1, "component": "sink", "error": "x" * 1500, "error_kind": "skippable",
                   "channel": "c1", "table": "dbo.ITEMS", "key": {"ID": "1.50", "D": "2024-01-02"}, "op": "u",
                   "source": {"topic": "p.group.g1", "partition": 2, "offset": 41},
                   "record": {"key_b64": _b64(b"k"), "value_b64": _b64(b"v"), "headers": [["h", _b64(b"\xff")]],
                              "timestamp": 1700},
                   "ts_ms": 5, "extra": {"kind": "channel", "raw": _b64(b"\x00")}}


def test_optional_headers_only_when_known_and_the_kafka_key() -> None:
    key, _, headers = make_letter("capture", "too big", error_kind="oversize", table="dbo.NOTES")
    assert key == b"dbo.NOTES"
    assert [k for k, _ in headers] == ["cdx.letter.version", "cdx.component", "cdx.error", "cdx.error.kind",
                                       "cdx.table"]
    key, _, _ = make_letter("router", "bad", source=Position("p.hq.dbo.T", 0, 1))
    assert key == b"p.hq.dbo.T"
    assert make_letter("router", "bad")[0] == b"router"


def test_a_letter_too_large_leaves_the_record_value_out() -> None:
    record = OriginRecord(b"k", b"v" * 2000, (("h", b"1"),), 7)
    _, value, _ = make_letter("router", "bad", source=Position("t", 0, 1), record=record, max_bytes=1000)
    letter = parse_letter(b"t", value, [("cdx.letter.version", b"1")])
    assert len(value) <= 1000 and letter.record == OriginRecord(b"k", None, (("h", b"1"),), 7)
    assert "2,000 bytes" in letter.extra["record_omitted"] and letter.source == Position("t", 0, 1)
    _, value, _ = make_letter("router", "bad", record=record, max_bytes=4000)
    assert parse_letter(b"t", value, [("cdx.letter.version", b"1")]).record == record


@pytest.mark.parametrize(("component", "kind"), [("channel-upload", "skippable"), ("sink", "boom")])
def test_unknown_component_or_error_kind_is_refused(component: str, kind: str) -> None:
    with pytest.raises(ValueError, match="unknown dead-letter"):
        make_letter(component, "x", error_kind=kind)


def test_unreadable_record_is_a_letter_of_unknown_origin() -> None:
    letter = parse_letter(b"k", b"\x00not json", [("trace", b"1")])
    assert letter.component == "unknown" and letter.version == 0
    assert letter.record == OriginRecord(b"k", b"\x00not json")


# ------------------------------------------------------------------ round trip, every component
_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)
_JSON_LEAF = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | _TEXT
_JSON = st.recursive(_JSON_LEAF, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
                     max_leaves=12)
_ORIGIN = st.builds(OriginRecord, st.none() | st.binary(max_size=40), st.none() | st.binary(max_size=200),
                    st.lists(st.tuples(_TEXT, st.none() | st.binary(max_size=20)), max_size=3).map(tuple),
                    st.none() | st.integers(1, 2**53))
_POSITION = st.builds(Position, _TEXT.filter(bool), st.integers(0, 2**31 - 1), st.integers(0, 2**62))


@settings(max_examples=300, deadline=None)
@given(component=st.sampled_from(COMPONENTS), error=_TEXT | st.text(min_size=990, max_size=1100),
       error_kind=st.sampled_from(ERROR_KINDS), channel=st.none() | _TEXT, table=st.none() | _TEXT,
       key=_JSON, op=st.none() | st.sampled_from(["c", "u", "d", "r"]), source=st.none() | _POSITION,
       record=st.none() | _ORIGIN, extra=st.dictionaries(_TEXT, _JSON, max_size=4), now_ms=st.integers(0, 2**53))
def test_make_then_parse_round_trips(component: str, error: str, error_kind: str, channel: str | None,
                                     table: str | None, key: Any, op: str | None, source: Position | None,
                                     record: OriginRecord | None, extra: dict[str, Any], now_ms: int) -> None:
    kafka_key, value, headers = make_letter(component, error, error_kind=error_kind, channel=channel, table=table,
                                            key=key, op=op, source=source, record=record, extra=extra,
                                            now_ms=now_ms)
    want = Letter(component, error, error_kind, channel, table, json_safe(key), op, source, record, extra, now_ms)
    assert parse_letter(kafka_key, value, headers) == want
    assert parse_letter(kafka_key, value, dict(headers)) == want  # headers as a dict read the same
    hdr = dict(headers)
    assert hdr["cdx.component"].decode() == component and hdr["cdx.error.kind"].decode() == error_kind
    assert hdr["cdx.error"] == error[:ERROR_HEADER_LIMIT].encode()
    assert ("cdx.source.offset" in hdr) == (source is not None) and ("cdx.channel" in hdr) == (channel is not None)


@settings(max_examples=300, deadline=None)
@given(doc=st.dictionaries(st.sampled_from(["version", "component", "error", "error_kind", "channel", "table",
                                            "key", "op", "source", "record", "ts_ms", "extra", "kind",
                                            "group_topic", "partition", "offset", "topic", "counter", "row",
                                            "schema", "replay_of"]), _JSON | st.dictionaries(_TEXT, _JSON)),
       versioned=st.booleans(), raw=st.binary(max_size=50))
def test_parse_never_raises(doc: dict[str, Any], versioned: bool, raw: bytes) -> None:
    headers = [("cdx.letter.version", b"1")] if versioned else [("cdx.error", b"x")]
    for value in (json.dumps(doc).encode(), raw, None):
        assert isinstance(parse_letter(b"k", value, headers), Letter)


# ------------------------------------------------------------------ LEGACY FIXTURES (written before version 1)
def test_legacy_sink_letter_is_read() -> None:
    """LEGACY FIXTURE: a channel sink's JSON letter as cdx.connectors.sink.dlq wrote it before version 1."""
    doc = {"channel": "c1", "kind": "offline", "group_topic": "p.group.g1", "partition": 2, "offset": 41,
           "schema": "dbo", "table": "ITEMS", "subjob": "Items", "op": "u", "key": {"ID": 137},
           "source": {"topic": "p.hq.dbo.ITEMS", "partition": 0, "offset": 9}, "error": "boom", "ts_ms": 77,
           "record": {"key_b64": _b64(b"k"), "value_b64": _b64(b"v"), "headers": [["trace", _b64(b"abc")]],
                      "timestamp": 1700},
           "replay_of": 3, "attempt": 2}
    headers = [("cdx.channel", b"c1"), ("cdx.table", b"dbo.ITEMS"), ("cdx.error", b"boom"),
               ("cdx.group.topic", b"p.group.g1"), ("cdx.group.partition", b"2"), ("cdx.group.offset", b"41"),
               ("cdx.source.topic", b"p.hq.dbo.ITEMS"), ("cdx.source.partition", b"0"), ("cdx.source.offset", b"9")]
    letter = parse_letter(b"c1", json.dumps(doc).encode(), headers)
    assert letter == Letter(
        "sink", "boom", "skippable", "c1", "dbo.ITEMS", {"ID": 137}, "u", Position("p.group.g1", 2, 41),
        OriginRecord(b"k", b"v", (("trace", b"abc"),), 1700),
        {"kind": "offline", "hq": doc["source"], "subjob": "Items", "replay_of": 3, "attempt": 2}, 77, 0)


@pytest.mark.parametrize(("old", "component", "kind"), [
    ("hq-upload-sink", "upload-sink", "skippable"), ("channel-upload", "upload", "skippable"),
    ("upload-gap", "upload", "gap"), ("offline-sync", "offline", "conflict")])
def test_legacy_upload_letter_is_read(old: str, component: str, kind: str) -> None:
    """LEGACY FIXTURE: an upload-side JSON letter as records.dlq_record wrote it before version 1."""
    sink = old == "hq-upload-sink"
    doc = {"channel": "c1", "kind": old, "topic": "p.upload.c1", "partition": 0 if sink else None,
           "offset": 4 if sink else None, "table": "ax.RETAILTRANS", "counter": 12, "error": "no such table",
           "ts_ms": 88, "row": {"ID": 1},
           "record": {"key_b64": _b64(b"k") if sink else None, "value_b64": _b64(b"v") if sink else None}}
    headers = [("cdx.channel", b"c1"), ("cdx.table", b"ax.RETAILTRANS"), ("cdx.error", b"no such table"),
               ("cdx.kind", old.encode()), ("cdx.upload.counter", b"12")]
    letter = parse_letter(b"c1", json.dumps(doc).encode(), headers)
    assert (letter.component, letter.error_kind, letter.channel, letter.table) == (component, kind, "c1",
                                                                                  "ax.RETAILTRANS")
    assert letter.key == {"counter": 12} and letter.extra["row"] == {"ID": 1} and letter.ts_ms == 88
    if sink:
        assert letter.source == Position("p.upload.c1", 0, 4) and letter.record == OriginRecord(b"k", b"v")
    else:
        assert letter.source is None and letter.record is None and letter.extra["topic"] == "p.upload.c1"


def test_legacy_capture_letter_is_read() -> None:
    """LEGACY FIXTURE: capture's JSON letter (records.dlq_record("capture", ...)) before version 1."""
    doc = {"channel": None, "kind": "capture", "topic": "p.hq.dbo.NOTES", "partition": None, "offset": None,
           "table": "dbo.NOTES", "counter": None, "error": "record of 2,000,100 bytes exceeds kafka.max_message_bytes",
           "ts_ms": 9, "row": {"ID": 2}, "record": {"key_b64": None, "value_b64": None}}
    letter = parse_letter(b"", json.dumps(doc).encode(), [("cdx.kind", b"capture"), ("cdx.error", b"record")])
    assert letter == Letter("capture", doc["error"], "oversize", None, "dbo.NOTES", {"ID": 2},
                            extra={"topic": "p.hq.dbo.NOTES"}, ts_ms=9, version=0)


def test_legacy_router_letter_is_read() -> None:
    """LEGACY FIXTURE: the router's letter before version 1: the raw source record, the reason in headers."""
    headers = [("cdx.component", b"router"), ("cdx.error", b"bad"), ("cdx.source.topic", b"p.hq.dbo.T"),
               ("cdx.source.partition", b"3"), ("cdx.source.offset", b"9")]
    letter = parse_letter(b"\x00key", b"\x00avro", headers)
    assert letter == Letter("router", "bad", "skippable", source=Position("p.hq.dbo.T", 3, 9),
                            record=OriginRecord(b"\x00key", b"\x00avro"), version=0)
