"""Dead letters round trip (the original bytes, headers and timestamp survive, so replay can decode
them), letters of the router and the upload side are listed too, letter states; no Kafka here."""

from __future__ import annotations

import json

from cdx.connectors.sink.dlq import dead_letter_value
from cdx.connectors.sink.letters import DeadLetter, latest_by_origin, letter_status, parse_letter
from cdx.connectors.sink.records import Record


def _sink_letter(offset: int, rec: Record, **extra: object) -> DeadLetter:
    doc = dead_letter_value("c1", "channel", "p.group.g1", rec, "boom", dict(extra) or None)
    return parse_letter(0, offset, 1_700_000_000_000, b"c1", json.dumps(doc).encode(),
                        [("cdx.channel", b"c1"), ("cdx.error", b"boom")])


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
    router = parse_letter(0, 1, 5, b"k", b"\x00avro", [("cdx.component", b"router"), ("cdx.error", b"bad"),
                                                        ("cdx.source.topic", b"p.hq.dbo.T"),
                                                        ("cdx.source.partition", b"3"), ("cdx.source.offset", b"9")])
    assert router.component == "router" and not router.replayable and router.origin is None
    assert router.source == {"topic": "p.hq.dbo.T", "partition": 3, "offset": 9} and router.error == "bad"
    upload = parse_letter(0, 2, 5, b"c1", json.dumps({
        "channel": "c1", "kind": "hq-upload-sink", "topic": "p.upload.c1", "partition": 0, "offset": 4,
        "table": "RETAILTRANS", "counter": 12, "error": "no such table", "row": {"ID": 1}, "record": {}}).encode(),
        None)
    assert upload.component == "hq-upload-sink" and not upload.replayable and upload.channel == "c1"
    assert letter_status(upload, {}, {}) == "-"


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
