"""Re-routed records in the sink's plan (header ``cdx.reroute``), re-route watermarks, and what a spec
change makes a sink do. Pure: records are encoded with the router's own codec and read by the sink's decoder."""

from __future__ import annotations

from typing import Any

from cdx.codec import Column, LogicalType, SchemaStore, SingleObjectCodec
from cdx.connectors.sink.plan import plan_batch
from cdx.connectors.sink.records import Decoder, Record
from cdx.connectors.sink.respec import describe_change
from cdx.connectors.sink.spec import FilterRule, SinkSpec
from cdx.connectors.sink.state import SinkState, Watermark, reroute_key, watermark_key
from cdx.routed import SourcePosition, make_value, routed_schemas, tombstone_headers
from cdx.streams.batch import REROUTE_HEADER

C = LogicalType
ITEMS = (Column("ID", C.INT64, primary_key=True), Column("NAME", C.STRING), Column("COLOR", C.STRING))
TOPIC = "t.group.g1"
SOURCE = "p.hq.dbo.ITEMS"
SPEC = SinkSpec("c1", "channel", "c1", "g1", "sqlite", "sqlite:///x.db", TOPIC, "p-sink-c1")


class Maker:
    def __init__(self) -> None:
        self.codec = SingleObjectCodec(SchemaStore())
        self.decoder = Decoder(self.codec, TOPIC)
        self.offset = 0
        self.rs = routed_schemas("ax", "ITEMS", ITEMS)

    def rec(self, op: str, row: dict[str, Any], src_offset: int, gen: str | None = None) -> Record:
        key = {"ID": row["ID"]}
        source = {"connector": "cdx", "name": "hq", "ts_ms": 1, "snapshot": "false", "db": "hq", "schema": "dbo",
                  "table": "ITEMS", "change_version": src_offset, "version": "0.1.0"}
        value = make_value(self.rs, op=op, key=key, row=None if op == "d" else row, source=source, ts_ms=1,
                           subjob="Items", position=SourcePosition(SOURCE, 0, src_offset))
        self.offset += 1
        headers = [(REROUTE_HEADER, gen.encode())] if gen else None
        return self.decoder.decode(0, self.offset - 1, self.codec.encode_key(TOPIC, self.rs.key, key),
                                   self.codec.encode_value(TOPIC, self.rs.value, value), headers=headers)

    def tombstone(self, id_: int, src_offset: int, gen: str | None = None) -> Record:
        headers = tombstone_headers(self.rs, "Items", SourcePosition(SOURCE, 0, src_offset))
        if gen:
            headers.append((REROUTE_HEADER, gen.encode()))
        self.offset += 1
        return self.decoder.decode(0, self.offset - 1, self.codec.encode_key(TOPIC, self.rs.key, {"ID": id_}), None,
                                   headers=headers)


def test_rerouted_records_pass_the_live_watermark_and_dedupe_on_their_own() -> None:
    m = Maker()
    live = watermark_key(0, SOURCE, 0)
    state = SinkState({0: 50}, {live: Watermark(200, frozenset({"ax.ITEMS"}))})
    rerouted = [m.rec("r", {"ID": 1, "NAME": "a", "COLOR": "red"}, 10, "1"),
                m.rec("u", {"ID": 2, "NAME": "b", "COLOR": "blue"}, 12, "1"),
                m.rec("d", {"ID": 3}, 14, "1"), m.tombstone(3, 14, "1")]
    plan = plan_batch([m.rec("u", {"ID": 1, "NAME": "old", "COLOR": None}, 10), *rerouted], state, SPEC)
    assert plan.duplicates == 1  # the live re-send of offset 10 is still one
    items = plan.tables[("ax", "ITEMS")]
    assert sorted(items.upserts()[("ID", "NAME", "COLOR")]) == [(1, "a", "red"), (2, "b", "blue")]
    assert items.deletes() == [(3,)]
    rkey = reroute_key(0, SOURCE, 0)
    assert plan.watermarks == {rkey: Watermark(14, frozenset({"ax.ITEMS"}), "1")}  # the live one is not moved
    state.merge(plan.offsets, plan.watermarks)
    again = plan_batch([m.rec("r", {"ID": 1, "NAME": "a", "COLOR": "red"}, 10, "1")], state, SPEC)
    assert again.duplicates == 1 and not again.tables  # the same re-route's record seen twice
    newer = plan_batch([m.rec("r", {"ID": 1, "NAME": "a", "COLOR": "green"}, 10, "2")], state, SPEC)
    assert newer.duplicates == 0 and newer.tables[("ax", "ITEMS")].upserts() == {
        ("ID", "NAME", "COLOR"): [(1, "a", "green")]}
    assert newer.watermarks == {rkey: Watermark(10, frozenset({"ax.ITEMS"}), "2")}


def test_reroute_watermark_encoding_and_junk_headers() -> None:
    w = Watermark(14, frozenset({"ax.ITEMS", "ext.ITEMSX"}), "3")
    assert w.encode() == "3/14 ax.ITEMS,ext.ITEMSX" and Watermark.decode(w.encode()) == w
    assert Watermark.decode("14 ax.ITEMS") == Watermark(14, frozenset({"ax.ITEMS"}))
    assert w.advance(20, "ax.ITEMS").gen == "3"
    assert reroute_key(1, "x" * 400, 2).startswith("rr:1:2:#")
    m = Maker()
    rec = m.rec("r", {"ID": 1, "NAME": "a", "COLOR": "red"}, 10, "x1")  # not a generation: a live record
    assert rec.reroute is None


def test_a_changed_row_filter_resyncs_other_changes_do_not() -> None:
    store1, store3 = {"items": FilterRule("STORE", "1")}, {"items": FilterRule("STORE", "3")}
    assert describe_change({}, {}) is None
    assert describe_change(store1, dict(store1)) is None
    assert describe_change(store1, store3) == "row filter changed (items: STORE = '1' -> STORE = '3')"
    assert "none -> STORE" in (describe_change({}, store1) or "")
    assert "-> none" in (describe_change(store1, {}) or "")


def test_the_database_remembers_its_filters_and_a_changed_one_asks_for_a_resync(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from cdx.connectors.sink.respec import filter_change, remember
    from cdx.dialects import connect, get_dialect

    d = get_dialect("sqlite")
    conn = connect("sqlite", f"sqlite:///{tmp_path}/c1.db")
    one, three = (SinkSpec("c1", "channel", "c1", "g1", "sqlite", "x", TOPIC, "g",
                           filters={"items": FilterRule("STORE", v)}) for v in ("1", "3"))
    with d.transaction(conn):
        d.ensure_state_table(conn)
        assert filter_change(conn, d, "sink:t", one) is None  # first time: stored as they are
        assert filter_change(conn, d, "sink:t", one) is None
        assert filter_change(conn, d, "sink:t", three) == "row filter changed (items: STORE = '1' -> STORE = '3')"
        assert filter_change(conn, d, "sink:t", three) is not None  # until a resync remembers them
        remember(conn, d, "sink:t", three)
        assert filter_change(conn, d, "sink:t", three) is None
    conn.close()
