"""The transactional engine's pure parts: routing with key state, value pass-through, the key stores."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from cdx.codec import SchemaStore, SingleObjectCodec
from cdx.codec.binary import avro_long
from cdx.codec.envelope import SourceInfo, change_records, make_envelope
from cdx.routed import parse_tombstone, parse_value, tombstone_headers
from cdx.streams.keystate import MemoryKeys, SqliteKeys, decode_held, encode_held
from cdx.streams.routing import RoutingPlan, SourceRecord, hq_columns
from cdx.streams.splice import Splicer
from cdx.streams.stateful import route_stateful
from cdx.topology import load_topology
from tests.routing.helpers import TABLES, Workload, topology_text

ALL = ("us", "de", "both")


def plan_and_schemas(tmp: Path) -> tuple[RoutingPlan, Any]:
    path = tmp / "t.yaml"
    path.write_text(topology_text("localhost:1", "p", tmp, notes=True))
    store = SchemaStore()
    schemas = {t: store.register_table(f"p.hq.dbo.{t}", cols) for t, cols in TABLES.items()}
    return RoutingPlan(load_topology(path)), schemas


def staff(schemas: Any, offset: int, op: str, entity: str | None) -> SourceRecord:
    key = {"STAFFID": "S1"}
    src = SourceInfo("cdx", "hq", "hq", "dbo", "STAFF", offset, 0).to_avro()
    env = None if op == "t" else {"op": op, "before": key if op == "d" else None, "source": src, "ts_ms": 0,
                                  "after": None if op == "d" else {**key, "DATAAREAID": entity, "NAME": "n"}}
    s = schemas["STAFF"]
    return SourceRecord("p.hq.dbo.STAFF", 0, offset, key, env, hq_columns(s.value, s.key), ("staff",))


def test_moves_deletes_and_tombstones_follow_the_key_state(tmp_path: Path) -> None:
    plan, schemas = plan_and_schemas(tmp_path)

    def step(held: Any, offset: int, op: str, entity: str | None = None, wanted: Any = ALL) -> Any:
        emits, now = route_stateful(plan, staff(schemas, offset, op, entity), held, wanted)
        return [(e.route.value["op"] if e.route.value else "t", e.groups) for e in emits], now

    assert step(None, 1, "c", "usrt") == ([("c", ("us", "both"))], frozenset({"us", "both"}))
    assert step(frozenset({"us", "both"}), 2, "u", "dert") == ([("d", ("us",)), ("t", ("us",)), ("u", ("both",))],
                                                              frozenset({"both"}))
    assert step(frozenset({"both"}), 3, "u", "frrt") == ([("d", ("both",)), ("t", ("both",))], frozenset())
    assert step(frozenset(), 4, "u", "frrt") == ([], frozenset())  # held by none: no deletes
    assert step(None, 5, "u", "frrt") == ([("d", ("us", "both")), ("t", ("us", "both"))], frozenset())  # unknown
    assert step(frozenset({"both"}), 6, "d") == ([("d", ("both",)), ("t", ("both",))], None)
    assert step(None, 7, "d") == ([("d", ("us", "both")), ("t", ("us", "both"))], None)  # never seen: every group
    assert step(None, 8, "t") == ([], None)  # a tombstone after its delete
    assert step(frozenset({"us"}), 9, "t") == ([("t", ("us",))], None)  # its delete compacted away
    # a backfill for "both" alone leaves what "us" holds alone
    assert step(frozenset({"us"}), 10, "u", "dert", wanted=("both",)) == ([("u", ("both",))], frozenset({"us", "both"}))


def test_a_routed_tombstone_says_which_delete_it_is(tmp_path: Path) -> None:
    plan, schemas = plan_and_schemas(tmp_path)
    rec = staff(schemas, 42, "t", None)
    emits, _ = route_stateful(plan, rec, frozenset({"us"}), ALL)
    (e,) = emits
    change = parse_tombstone(e.route.key, tombstone_headers(e.route.schemas, "Staff", rec.position))
    assert change is not None and change.is_delete and change.position == rec.position
    assert (change.schema, change.table, change.key) == ("ax", "STAFF", {"STAFFID": "S1"})
    assert parse_tombstone({"STAFFID": "S1"}, [("other", b"x")]) is None


def test_identity_projections_pass_values_through(tmp_path: Path) -> None:
    """Spliced bytes equal the codec's for every record of the tables whose projection is the identity."""
    plan, schemas = plan_and_schemas(tmp_path)
    codec = SingleObjectCodec(SchemaStore())
    splicer = Splicer()
    work = Workload(3)
    spliced = 0
    for i, ch in enumerate(work.changes(400)):
        if ch.op == "d":
            continue
        topic = f"p.hq.dbo.{ch.table}"
        s = schemas[ch.table]
        env = make_envelope(ch.op, after=ch.row, source=SourceInfo("cdx", "hq", "hq", "dbo", ch.table, i, 1),
                            ts_ms=int(time.time() * 1000))
        ((key, value),) = [kv for kv in change_records(ch.key, env) if kv[1] is not None]
        kb, vb = codec.encode_key(topic, s.key, key), codec.encode_value(topic, s.value, value)
        rec = SourceRecord(topic, 1, 1000 + i, codec.decode_key(topic, kb), codec.decode_value(topic, vb),
                           hq_columns(s.value, s.key), (vb[2:10], kb[2:10]))
        for r in plan.route(rec):
            normal = (codec.encode_key("g", r.schemas.key, r.key), codec.encode_value("g", r.schemas.value, r.value))
            got = splicer.encode(rec, r, kb, vb or b"", lambda n=normal: n)  # type: ignore[misc]
            assert got == normal
            assert parse_value(codec.decode_key("g", got[0]), codec.decode_value("g", got[1]) or {}) == \
                parse_value(r.key, r.value or {})
    spliced = sum(p is not None for p in splicer._plans.values())
    assert spliced == 2  # STAFF and NOTES keep every column in order; ITEMS and PRODUCTS drop some
    assert avro_long(0) == b"\x00" and avro_long(-1) == b"\x01" and avro_long(64) == b"\x80\x01"


def test_key_stores_keep_sets_and_changelog_positions(tmp_path: Path) -> None:
    for store in (MemoryKeys(), SqliteKeys(tmp_path / "k.sqlite")):
        store.apply({b"a": frozenset({"us", "de"}), b"b": frozenset()}, {0: 5})
        store.apply({b"a": None, b"c": frozenset({"us"})}, {0: 9})
        assert (store.get(b"a"), store.get(b"b"), store.get(b"c")) == (None, frozenset(), frozenset({"us"}))
        assert store.next_offsets() == {0: 9} and len(store) == 2
    again = SqliteKeys(tmp_path / "k.sqlite")  # survives a restart
    assert again.get(b"c") == frozenset({"us"}) and again.next_offsets() == {0: 9}
    assert decode_held(encode_held(frozenset())) == frozenset() and encode_held(None) is None
