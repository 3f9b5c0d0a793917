"""Sink building blocks without Kafka: watermarks, planning, state, specs, the batch-apply function."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cdx.codec import Column, LogicalType, SchemaStore, SingleObjectCodec
from cdx.connectors.sink.apply import BatchResult, write_batch
from cdx.connectors.sink.plan import plan_batch
from cdx.connectors.sink.records import Decoder, Record
from cdx.connectors.sink.spec import sink_specs
from cdx.connectors.sink.state import SinkState, StateStore, Watermark, watermark_key
from cdx.connectors.sink.tables import TableManager
from cdx.dialects import connect, get_dialect
from cdx.errors import ConfigError
from cdx.routed import SourcePosition, make_value, routed_schemas
from tests.sink.helpers import sqlite_db, write_topology

C = LogicalType
ITEMS = (Column("ID", C.INT64, primary_key=True), Column("STORE", C.INT64), Column("NAME", C.STRING))
EXT = (Column("ID", C.INT64, primary_key=True), Column("SEAT", C.INT32))
TOPIC = "t.group.g1"


class Maker:
    """Encodes routed records and decodes them as a sink would (memory-only schema store)."""

    def __init__(self) -> None:
        self.codec = SingleObjectCodec(SchemaStore())
        self.decoder = Decoder(self.codec, TOPIC)
        self.offset = 0

    def rec(self, op: str, row: dict[str, Any], src_offset: int, *, table: str = "ITEMS",
            cols: tuple[Column, ...] = ITEMS, partition: int = 0, subjob: str = "Items") -> Record:
        rs = routed_schemas("ext" if table == "ITEMSX" else "ax", table, cols)
        key = {c.field: row[c.field] for c in rs.key_columns}
        source = {"connector": "cdx", "name": "hq", "ts_ms": 1, "snapshot": "false", "db": "hq", "schema": "dbo",
                  "table": table, "change_version": src_offset, "version": "0.1.0"}
        value = make_value(rs, op=op, key=key, row=None if op == "d" else row, source=source, ts_ms=1,
                           subjob=subjob, position=SourcePosition("p.hq.dbo.ITEMS", 1, src_offset))
        self.offset += 1
        return self.decoder.decode(partition, self.offset - 1, self.codec.encode_key(TOPIC, rs.key, key),
                                   self.codec.encode_value(TOPIC, rs.value, value))

    def tombstone(self, partition: int = 0) -> Record:
        self.offset += 1
        return Record(partition, self.offset - 1, b"k", None)


@pytest.fixture
def spec(tmp_path: Path):
    db = sqlite_db(tmp_path, "c1", recid=7)
    db.registers.append(sqlite_db(tmp_path, "c1r"))
    subjobs: list[dict[str, Any]] = [
        {"id": "Items", "hq_table": "dbo.ITEMS", "fields": ["ID", "STORE", "NAME"], "scheduled_by": ["1040"],
         "channel_filter": {"column": "STORE", "attribute": "recid"},
         "extension": {"table": "ext.ITEMSX", "fields": ["SEAT"]}},
        {"id": "Other", "hq_table": "dbo.OTHER", "fields": ["ID"], "scheduled_by": ["1040"]}]
    _, topo = write_topology(tmp_path, "127.0.0.1:1", [db], subjobs=subjobs)
    return sink_specs(topo)


def test_watermark_fan_out_and_encoding() -> None:
    w = Watermark(10, frozenset({"ax.A"}))
    w2 = w.advance(10, "ext.B")
    assert w2.targets == {"ax.A", "ext.B"} and Watermark.decode(w2.encode()) == w2
    assert w2.advance(5, "x") is w2 and w2.advance(11, "ax.A") == Watermark(11, frozenset({"ax.A"}))
    long = watermark_key(3, "x" * 400, 2)
    assert len(long) <= 256 and long.startswith("wm:3:2:#") and long == watermark_key(3, "x" * 400, 2)


def test_specs_order_filters_and_registers(spec) -> None:
    chan, reg = spec
    assert (chan.owner_id, chan.kind, reg.owner_id, reg.kind) == ("c1", "channel", "c1r", "offline")
    assert chan.table_order == (("ax", "ITEMS"), ("ext", "ITEMSX"), ("ax", "OTHER"))
    assert chan.rank("AX", "items") < chan.rank("ext", "ITEMSX") < chan.rank("ax", "OTHER") < chan.rank("ax", "Z")
    assert chan.filter_for("items").value == "7" and reg.filter_for("ITEMS").value == "7"  # type: ignore[union-attr]
    assert chan.consumer_group.endswith("-sink-c1") and chan.topic.endswith(".group.g1")


def test_unknown_channel_is_a_config_error(tmp_path: Path) -> None:
    _, topo = write_topology(tmp_path, "127.0.0.1:1", [sqlite_db(tmp_path, "c1")])
    with pytest.raises(ConfigError, match="no channel or offline register 'zz'"):
        sink_specs(topo, ["zz"])


def test_plan_skips_resends_collapses_filters(spec) -> None:
    chan = spec[0]
    m = Maker()
    recs = [
        m.rec("c", {"ID": 1, "STORE": 7, "NAME": "a"}, 100),
        m.rec("c", {"ID": 1, "SEAT": 3}, 100, table="ITEMSX", cols=EXT),  # same source offset, other table
        m.rec("u", {"ID": 1, "STORE": 7, "NAME": "b"}, 101),
        m.rec("c", {"ID": 1, "STORE": 7, "NAME": "a"}, 100),  # re-send
        m.rec("c", {"ID": 2, "STORE": 8, "NAME": "elsewhere"}, 102),  # filtered: becomes a delete
        m.rec("d", {"ID": 3}, 103),
        m.tombstone(),
    ]
    recs.append(m.decoder.decode(0, recs[-1].offset + 1, b"x", b"garbage"))
    plan = plan_batch(recs, SinkState(), chan)
    assert plan.duplicates == 1 and plan.filtered == 1 and plan.applied == 4
    assert plan.offsets == {0: recs[-1].offset + 1}
    items = plan.tables[("ax", "ITEMS")]
    assert items.upserts() == {("ID", "STORE", "NAME"): [(1, 7, "b")]} and sorted(items.deletes()) == [(2,), (3,)]
    assert plan.tables[("ext", "ITEMSX")].upserts() == {("ID", "SEAT"): [(1, 3)]}
    (key, mark), = plan.watermarks.items()
    assert key == watermark_key(0, "p.hq.dbo.ITEMS", 1) and mark == Watermark(103, frozenset({"ax.ITEMS"}))
    assert [r for r, _ in plan.dead] == [recs[-1]]
    # against stored state, everything up to 101 is a re-send
    again = plan_batch(recs[:4], SinkState({}, {key: Watermark(101, frozenset({"ax.ITEMS"}))}), chan)
    assert again.duplicates == 4 and not again.tables
    poisoned = plan_batch(recs[2:3], SinkState(), chan, poison="boom")
    assert not poisoned.tables and poisoned.dead == [(recs[2], "boom")] and poisoned.watermarks


def commit_batch(conn: Any, d: Any, store: StateStore, tables: TableManager, chan: Any, records: list[Record],
                 dead_letter: Any) -> BatchResult:
    """One batch in one transaction, as the channel target commits it."""
    with d.transaction(conn):
        result = write_batch(conn, d, store, tables, chan, records, dead_letter)
    result.state.merge(result.plan.offsets, result.plan.watermarks)
    return result


def test_commit_batch_is_idempotent_and_widens_tables(spec, tmp_path: Path) -> None:
    chan = spec[0]
    m = Maker()
    d = get_dialect("sqlite")
    conn = connect("sqlite", f"sqlite:///{tmp_path}/c1.db")
    store, tables = StateStore(d, chan.topic), TableManager(d)
    with d.transaction(conn):
        store.ensure(conn)
    letters: list[tuple[Record, str]] = []
    batch = [m.rec("c", {"ID": i, "STORE": 7, "NAME": f"n{i}"}, i) for i in range(5)]
    r1 = commit_batch(conn, d, store, tables, chan, batch, lambda r, why: letters.append((r, why)))
    assert r1.plan.applied == 5 and r1.state.offsets == {0: 5}
    r2 = commit_batch(conn, d, store, TableManager(d), chan, batch, lambda r, why: letters.append((r, why)))
    assert r2.plan.applied == 0 and r2.plan.duplicates == 5 and not letters
    wider = (*ITEMS, Column("PRICE", C.DECIMAL, precision=10, scale=2))
    from decimal import Decimal
    r3 = commit_batch(conn, d, store, tables, chan, [m.rec("u", {"ID": 1, "STORE": 7, "NAME": "x",
                                                                 "PRICE": Decimal("1.50")}, 10, cols=wider)],
                      lambda r, why: None)
    assert r3.plan.applied == 1
    rows = dict(conn.execute('SELECT "ID", "PRICE" FROM "ax_ITEMS"').fetchall())
    assert rows == {0: None, 1: "1.50", 2: None, 3: None, 4: None}
    with d.transaction(conn):
        assert store.load(conn).offsets == {0: 6}
    conn.close()


def test_parse_value_builds_the_change_its_constructor_would() -> None:
    """``parse_value`` fills the frozen instances through ``__dict__`` (speed): equal, hashable, still frozen."""
    import dataclasses

    from cdx.routed import RoutedChange, parse_value

    value = {"before": None, "after": {"ID": 5, "NAME": "x"}, "source": {"ts_ms": 7, "change_version": 9}, "op": "u",
             "ts_ms": 8, "target": {"schema": "ax", "table": "T"}, "subjob": "S",
             "position": {"topic": "hq.T", "partition": 1, "offset": 2}, "filter": {"value": "3"}}
    key = {"ID": 5}
    got = parse_value(key, value)
    want = RoutedChange("ax", "T", "S", "u", {"ID": 5}, value["after"], SourcePosition("hq.T", 1, 2), 9, 7, 8, True,
                        "3")
    assert got == want and repr(got) == repr(want) and hash(got.position) == hash(want.position)
    assert got.key is not key and dataclasses.asdict(got) == dataclasses.asdict(want)
    unfiltered = parse_value(key, {**value, "filter": None, "op": "d", "after": None})
    assert not unfiltered.filtered and unfiltered.filter_value is None and unfiltered.is_delete
    with pytest.raises(dataclasses.FrozenInstanceError):
        got.op = "d"  # type: ignore[misc]
