"""The sink's compiled routed reader (``cdx.connectors.sink.fastrecords``) builds what the general path builds."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdx.codec import Column, LogicalType, SchemaStore, SingleObjectCodec
from cdx.codec.binary import read_body
from cdx.codec.single_object import HEADER_SIZE
from cdx.connectors.sink.fastrecords import routed_reader
from cdx.connectors.sink.records import Decoder, Record, shape_of
from cdx.routed import SourcePosition, make_value, parse_value, routed_schemas
from tests.codec.codec_strategies import columns, row_for

L = LogicalType
TOPIC = "t.group.g1"
SOURCE = {"connector": "cdx", "name": "hq", "ts_ms": 11, "snapshot": "false", "db": "hq", "schema": "dbo",
          "table": "T", "change_version": 12, "version": "0.1.0"}


def general(shape: Any, value: dict[str, Any], key: dict[str, Any]) -> tuple[Any, ...]:
    """What ``parse_value``, ``Shape.key_values`` and ``Shape.row_values`` give (the general path)."""
    change = parse_value(key, value)
    row = None if change.is_delete or change.row is None else shape.row_values(change.row)
    return change, shape.key_values(change.key), row


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_same_as_the_general_path(data: st.DataObject) -> None:
    cols = tuple(data.draw(columns()))
    rs = routed_schemas("ax", "T", cols)
    shape = shape_of("ax", "T", rs.key, rs.value)
    read = routed_reader(rs.value, shape)
    assert read is not None
    row = data.draw(row_for(list(cols)))
    key = {c.field: row[c.field] for c in rs.key_columns}
    codec = SingleObjectCodec(SchemaStore())
    for op, filtered, fv in (("c", False, None), ("u", True, "7"), ("d", True, None), ("d", False, None)):
        value = make_value(rs, op=op, key=key, row=None if op == "d" else row, source=SOURCE, ts_ms=3, subjob="S",
                           position=SourcePosition("hq.T", 2, 99), filtered=filtered, filter_value=fv)
        body = codec.encode_value(TOPIC, rs.value, value)
        decoded = read_body(body[HEADER_SIZE:], rs.value)
        carrier = decoded["before" if op == "d" else "after"]  # as ``records._key_from_value``
        got, want = read(body, HEADER_SIZE), general(shape, decoded, {k: carrier[k] for k in shape.key_fields})
        assert got == want and repr(got) == repr(want)
        assert got[0].position == want[0].position and got[0].__dict__ == want[0].__dict__


def test_decoder_fills_the_records_and_falls_back_without_a_key_in_the_value() -> None:
    cols = (Column("ID", L.INT64, primary_key=True), Column("TS", L.TIMESTAMP), Column("S", L.STRING))
    rs = routed_schemas("ax", "T", cols)
    codec = SingleObjectCodec(SchemaStore())
    decoder = Decoder(codec, TOPIC)
    import datetime as dt

    row = {"ID": 4, "TS": dt.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=dt.UTC), "S": "x"}
    kb = codec.encode_key(TOPIC, rs.key, {"ID": 4})

    def rec(op: str, r: dict[str, Any] | None, offset: int) -> Record:
        value = make_value(rs, op=op, key={"ID": 4}, row=r, source=SOURCE, ts_ms=3, subjob="S",
                           position=SourcePosition("hq.T", 0, offset))
        if op == "d" and offset == 3:
            value["before"] = None  # a delete that does not carry its key: the key bytes give it
        return decoder.decode(0, offset, kb, codec.encode_value(TOPIC, rs.value, value))

    first, second, delete, bare = rec("c", row, 1), rec("u", row, 2), rec("d", None, 4), rec("d", None, 3)
    assert first.row_values is None  # the first record of a schema pair goes the general way
    assert second.row_values == (4, dt.datetime(2026, 1, 2, 3, 4, 5, 6), "x") and second.key_values == (4,)
    assert second.change is not None and second.change.row == row and second.change.key == {"ID": 4}
    assert delete.key_values == (4,) and delete.row_values is None and delete.change is not None
    assert delete.change.is_delete and delete.change.key == {"ID": 4}
    assert bare.key_values is None and bare.change is not None and bare.change.key == {"ID": 4}
    assert bare.error is None and first.shape is second.shape is delete.shape is bare.shape


def test_decoders_of_many_channels_share_one_compiled_reader_per_schema() -> None:
    """A sink host decodes one group topic for many channels: each writer schema is compiled once."""
    cols = (Column("ID", L.INT64, primary_key=True), Column("N", L.STRING))
    rs = routed_schemas("ax", "SHARED", cols)
    codec = SingleObjectCodec(SchemaStore())
    kb = codec.encode_key(TOPIC, rs.key, {"ID": 1})
    vb = codec.encode_value(TOPIC, rs.value, make_value(rs, op="c", key={"ID": 1}, row={"ID": 1, "N": "a"},
                                                        source=SOURCE, ts_ms=3, subjob="S",
                                                        position=SourcePosition("hq.T", 0, 1)))
    decoders = [Decoder(codec, TOPIC) for _ in range(3)]
    for d in decoders:
        assert d.decode(0, 0, kb, vb).error is None
    (first,), *others = [list(d._by_header.values()) for d in decoders]
    assert first[2] is not None and all(o == [first] for o in others)  # the same shape and reader objects
