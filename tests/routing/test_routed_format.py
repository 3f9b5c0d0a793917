"""The group-topic record format round-trips and keeps tables apart."""

from __future__ import annotations

from decimal import Decimal

from cdx.codec import Column, LogicalType, SingleObjectCodec
from cdx.routed import SourcePosition, columns_of, make_value, parse_value, routed_schemas
from cdx.streams.splice import routing_tail

COLS = (
    Column("DATAAREAID", LogicalType.STRING, nullable=False, primary_key=True, length=4),
    Column("ITEMID", LogicalType.STRING, nullable=False, primary_key=True, length=20),
    Column("PRICE", LogicalType.DECIMAL, precision=18, scale=4),
)


def test_round_trip_and_columns() -> None:
    codec = SingleObjectCodec()
    schemas = routed_schemas("ax", "INVENTTABLE", COLS)
    key = {"DATAAREAID": "usrt", "ITEMID": "A1"}
    row = {**key, "PRICE": Decimal("1.5000")}
    source = {"connector": "cdx", "name": "hq", "ts_ms": 5, "snapshot": "false", "db": "hq", "schema": "dbo",
              "table": "INVENTTABLE", "change_version": 42, "version": "0.1.0"}
    pos = SourcePosition("cdx.hq.dbo.INVENTTABLE", 2, 17)
    value = make_value(schemas, op="u", key=key, row=row, source=source, ts_ms=9, subjob="InventTable",
                       position=pos)
    kb = codec.encode_key("g", schemas.key, key)
    vb = codec.encode_value("g", schemas.value, value)
    assert vb is not None
    change = parse_value(codec.decode_key("g", kb), codec.decode_value("g", vb) or {})
    assert change.position == pos and change.version == 42 and change.row == row and change.op == "u"
    assert (change.schema, change.table) == ("ax", "INVENTTABLE")
    cols = columns_of(codec.writer_schema("g", vb), codec.writer_schema("g", kb, is_key=True))
    assert [c.name for c in cols if c.primary_key] == ["DATAAREAID", "ITEMID"]


def test_equal_keys_of_two_tables_differ() -> None:
    codec = SingleObjectCodec()
    a = routed_schemas("ax", "A", COLS[:2])
    b = routed_schemas("ax", "B", COLS[:2])
    key = {"DATAAREAID": "usrt", "ITEMID": "A1"}
    assert codec.encode_key("g", a.key, key) != codec.encode_key("g", b.key, key)


def test_filter_field_round_trips_and_its_bytes_end_the_value() -> None:
    codec = SingleObjectCodec()
    schemas = routed_schemas("ax", "INVENTTABLE", COLS)
    key = {"DATAAREAID": "usrt", "ITEMID": "A1"}
    source = {"connector": "cdx", "name": "hq", "ts_ms": 5, "snapshot": "false", "db": "hq", "schema": "dbo",
              "table": "INVENTTABLE", "version": 42}
    pos = SourcePosition("cdx.hq.dbo.INVENTTABLE", 2, 17)
    for filtered, flt in ((False, None), (True, None), (True, "5637144576"), (True, "x" * 200)):
        value = make_value(schemas, op="u", key=key, row={**key, "PRICE": None}, source=source, ts_ms=9,
                           subjob="InventTable", position=pos, filtered=filtered, filter_value=flt)
        vb = codec.encode_value("g", schemas.value, value) or b""
        assert vb.endswith(routing_tail(value))
        without = make_value(schemas, op="u", key=key, row={**key, "PRICE": None}, source=source, ts_ms=9,
                             subjob="InventTable", position=pos)
        assert vb[:-len(routing_tail(value))] == (codec.encode_value("g", schemas.value, without) or b"")[:-1]
        change = parse_value(key, codec.decode_value("g", vb) or {})
        assert (change.filtered, change.filter_value) == (filtered, flt)
