"""Dead letters round trip (the original bytes, headers and timestamp survive, so replay can decode
them), letters of the router and the upload side are listed too (also in their legacy formats),
letter states; no Kafka here."""

from __future__ import annotations

import json

from cdx.connectors.sink.dlq import sink_letter
from cdx.connectors.sink.letters import DeadLetter, latest_by_origin, letter_status, parse_letter
from cdx.connectors.sink.records import Record
from cdx.connectors.upload.acks import wants_attention
from cdx.connectors.upload.records import dlq_record
from cdx.stage.letters import OriginRecord, Position, make_letter


def _sink_letter(offset: int, rec: Record, **extra: object) -> DeadLetter:
    key, value, headers = sink_letter("c1", "channel", "p.group.g1", rec, "boom", dict(extra) or None)
    return parse_letter(0, offset, 1_700_000_000_000, key, value, headers)


def test_sink_letter_carries_the_original_record() -> None:
    rec = Record(2, 41, b"\x00key", b"\x01value", timestamp=1_699_999_999_123,
                 headers=[("trace", b"abc"), ("bin", b"\xff\x00")])
    letter = _sink_letter(7, rec, replay_of=3, attempt=2)
    assert letter.component == "sink" and letter.replayable and letter.origin == ("p.group.g1", 2, 41)
    assert letter.record_bytes() == (b"\x00key", b"\x01value", [("trace", b"abc"), ("bin", b"\xff\x00")],
                                     1_699_999_999_123)
    assert letter.replay_of == 3 and letter.error == "boom" and letter.channel == "c1"
    assert letter.to_json()["time"].startswith("2023-11-14T22:13:20")
    undecodable = _sink_letter(8, Record(0, 1, b"k", b"garbage", error="cannot decode"))
    assert undecodable.table is None and undecodable.replayable


def test_router_and_upload_letters_are_listed_not_replayed() -> None:
    router = parse_letter(0, 1, 5, *make_letter("router", "bad", source=Position("p.hq.dbo.T", 3, 9),
                                                record=OriginRecord(b"k", b"\x00avro")))
    assert router.component == "router" and not router.replayable and router.error == "bad"
    assert router.source == {"topic": "p.hq.dbo.T", "partition": 3, "offset": 9}
    assert router.letter is not None and router.letter.record == OriginRecord(b"k", b"\x00avro")
    upload = parse_letter(0, 2, 5, *dlq_record("upload-sink", "no such table", channel="c1", table="RETAILTRANS",
                                               counter=12, topic="p.upload.c1", partition=0, offset=4,
                                               row={"ID": 1}, key=b"k", value=b"v"))
    assert upload.component == "upload-sink" and not upload.replayable and upload.channel == "c1"
    assert upload.key == {"counter": 12} and upload.extra["row"] == {"ID": 1} and upload.origin == ("p.upload.c1", 0, 4)
    assert letter_status(upload, {}, {}) == "-" and not wants_attention(upload)
    gap = parse_letter(0, 3, 5, *dlq_record("upload", "gave up", error_kind="gap", channel="c1", table="T",
                                            counter=3, topic="p.upload.c1"))
    capture = parse_letter(0, 4, 5, *make_letter("capture", "too big", error_kind="oversize", table="dbo.T",
                                                 key={"ID": 2}, extra={"topic": "p.hq.dbo.T"}))
    assert wants_attention(gap) and wants_attention(capture) and capture.key == {"ID": 2}


def test_legacy_letters_are_still_listed() -> None:
    """LEGACY FIXTURES: a sink letter, an upload-gap letter and a router letter as written before version 1."""
    sink = parse_letter(0, 1, 5, b"c1", json.dumps({
        "channel": "c1", "kind": "channel", "group_topic": "p.group.g1", "partition": 0, "offset": 5,
        "schema": "dbo", "table": "ITEMS", "subjob": "Items", "op": "c", "key": {"ID": 1},
        "source": {"topic": "p.hq.dbo.ITEMS", "partition": 0, "offset": 3}, "error": "boom", "ts_ms": 5,
        "record": {"key_b64": "aw==", "value_b64": "dg==", "headers": [], "timestamp": 9}}).encode(), [])
    assert sink.replayable and sink.origin == ("p.group.g1", 0, 5) and sink.record_bytes() == (b"k", b"v", None, 9)
    assert sink.source == {"topic": "p.hq.dbo.ITEMS", "partition": 0, "offset": 3} and sink.table == "dbo.ITEMS"
    gap = parse_letter(0, 2, 5, b"c1", json.dumps({
        "channel": "c1", "kind": "upload-gap", "topic": "p.upload.c1", "partition": None, "offset": None,
        "table": "T", "counter": 3, "error": "gave up", "ts_ms": 5, "row": {"first_counter": 3},
        "record": {"key_b64": None, "value_b64": None}}).encode(), [("cdx.kind", b"upload-gap")])
    assert gap.component == "upload" and wants_attention(gap) and not gap.replayable
    router = parse_letter(0, 3, 5, b"k", b"\x00avro", [("cdx.component", b"router"), ("cdx.error", b"bad")])
    assert router.component == "router" and router.error == "bad" and router.origin is None


def test_letter_states() -> None:
    first = _sink_letter(1, Record(0, 5, b"k", b"v"))
    other = _sink_letter(2, Record(0, 6, b"k", b"v"))
    again = _sink_letter(3, Record(0, 5, b"k", b"v"), replay_of=1)
    latest = latest_by_origin([first, other, again])
    assert latest[("p.group.g1", 0, 5)] is again
    assert letter_status(first, latest, {}) == "superseded"
    assert letter_status(again, latest, {}) == "pending"
    assert letter_status(again, latest, None) == "unknown"
    assert letter_status(again, latest, {(0, 5): {"outcome": "applied"}}) == "replayed"
    assert letter_status(other, latest, {(0, 6): {"outcome": "stale"}}) == "stale"
