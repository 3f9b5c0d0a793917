"""Compiled Avro readers (``cdx.codec.fastread``) give what fastavro gives, value for value."""

from __future__ import annotations

import datetime as dt
import decimal
import io
import uuid
from typing import Any

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdx.codec import AvroSchema, Column, LogicalType, SourceInfo, TableSchemas, make_envelope
from cdx.codec.binary import read_body, write_body
from cdx.codec.errors import DecodeError
from cdx.codec.fastread import compile_reader
from cdx.routed import SourcePosition, make_value, routed_schemas
from tests.codec.codec_strategies import columns, row_for

L = LogicalType
SRC = SourceInfo("sqlserver", "hq", "AxDB", "dbo", "T", 7, 1_700_000_000_000)


def same(schema: Any, datum: Any, *, plain: bool = False) -> Any:
    """Encode ``datum`` (``plain``: with fastavro alone, no cdx normalizing), read it back both ways, assert
    equal (types included); the compiled value."""
    s = AvroSchema.of(schema)
    if plain:
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, s.parsed, datum)
        body = buf.getvalue()
    else:
        body = write_body(s, datum)
    read = compile_reader(s.to_dict())
    assert read is not None
    got, want = read(b"\xff\xff" + body, 2), read_body(body, s)
    assert got == want
    assert repr(got) == repr(want)  # same types (Decimal exponent, aware datetimes ...)
    return got


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_envelopes_of_any_columns(data: st.DataObject) -> None:
    cols = data.draw(columns())
    schemas = TableSchemas.build("hq.dbo.T", cols)
    row = data.draw(row_for(cols))
    same(schemas.value.to_dict(), make_envelope("u", before=row, after=row, source=SRC, ts_ms=5))
    same(schemas.value.to_dict(), make_envelope("d", before=schemas.key_of(row), source=SRC, ts_ms=-5))
    same(schemas.key.to_dict(), schemas.key_of(row))


def test_routed_envelope() -> None:
    cols = (Column("ID", L.INT64, primary_key=True), Column("PRICE", L.DECIMAL, precision=38, scale=6),
            Column("TS", L.TIMESTAMP), Column("D", L.DATE), Column("U", L.UUID), Column("OK", L.BOOL),
            Column("F", L.FLOAT64), Column("B", L.BYTES), Column("N", L.INT32), Column("S", L.STRING, length=5))
    rs = routed_schemas("ax", "T", cols)
    row = {"ID": 2**62, "PRICE": decimal.Decimal("-12345678901234567890123456789012.345678"),
           "TS": dt.datetime(1900, 1, 1, 0, 0, 0, 1, tzinfo=dt.UTC), "D": dt.date(9999, 12, 31), "U": uuid.uuid4(),
           "OK": True, "F": -1.5e300, "B": b"\x00" * 300, "N": -(2**31), "S": "é" * 200}
    for filtered in (False, True):
        value = make_value(rs, op="c", key={"ID": 1}, row=row, source=SRC.to_avro(), ts_ms=1, subjob="S",
                           position=SourcePosition("t", 0, 2**40), filtered=filtered, filter_value="x")
        got = same(rs.value.to_dict(), value)
        assert got["after"]["PRICE"] == row["PRICE"] and got["position"]["offset"] == 2**40


@pytest.mark.parametrize("schema, datum", [
    ({"type": "array", "items": ["null", "long", "string"]}, [None, 1, "a", -(2**63)]),
    ({"type": "map", "values": {"type": "enum", "name": "E", "symbols": ["A", "B"]}}, {"x": "B", "": "A"}),
    ({"type": "record", "name": "R", "namespace": "n", "fields": [
        {"name": "f", "type": {"type": "fixed", "name": "F", "size": 3}},
        {"name": "g", "type": "F"}, {"name": "h", "type": "n.F"},
        {"name": "d", "type": {"type": "fixed", "name": "D", "size": 8, "logicalType": "decimal", "precision": 10,
                               "scale": 2}},
        {"name": "m", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "x", "type": {"type": "string", "logicalType": "made-up"}},
        {"name": "fl", "type": "float"}, {"name": "nul", "type": "null"}]},
     {"f": b"abc", "g": b"def", "h": b"ghi", "d": decimal.Decimal("-1.25"),
      "m": dt.datetime(2026, 1, 1, 0, 0, 0, 123000, tzinfo=dt.UTC), "x": "y", "fl": 0.5, "nul": None}),
    ("string", "x" * 100_000),
])
def test_other_types(schema: Any, datum: Any) -> None:
    same(schema, datum, plain=True)


def test_unsupported_schemas_are_left_to_fastavro() -> None:
    recursive = {"type": "record", "name": "L", "fields": [{"name": "next", "type": ["null", "L"]}]}
    assert compile_reader(recursive) is None
    assert compile_reader({"type": "int", "logicalType": "time-millis"}) is None
    assert compile_reader({"type": "bytes", "logicalType": "decimal"}) is None  # no precision
    deep: Any = "long"
    for _ in range(30):  # more nested blocks than Python compiles
        deep = {"type": "array", "items": deep}
    assert compile_reader(deep) is None


def test_malformed_bodies_raise_decode_error() -> None:
    schema = {"type": "record", "name": "R", "fields": [{"name": "s", "type": "string"},
                                                         {"name": "n", "type": ["null", "long"]}]}
    read = compile_reader(schema)
    assert read is not None
    body = write_body(AvroSchema.of(schema), {"s": "abc", "n": 3})
    assert read(body, 0) == {"s": "abc", "n": 3}
    for bad, why in ((body[:-1], "cannot decode"), (body[:2], "after the Avro body|cannot decode"),
                     (body + b"\x00", "bytes after the Avro body"), (b"\x01" + body[1:], "cannot decode"),
                     (body[:4] + b"\x04\x06", "cannot decode"), (b"\x06\xff\xfe\xfd\x00", "cannot decode")):
        with pytest.raises(DecodeError, match=why):
            read(bad, 0)


def test_keep_projects_a_record_and_skips_the_rest() -> None:
    cols = (Column("ID", L.INT64, primary_key=True), Column("S", L.STRING))
    rs = routed_schemas("ax", "P", cols)
    value = make_value(rs, op="c", key={"ID": 1}, row={"ID": 1, "S": "x" * 300}, source=SRC.to_avro(), ts_ms=9,
                       subjob="S", position=SourcePosition("t", 0, 5))
    body = write_body(rs.value, value)
    full = read_body(body, rs.value)
    kept = {"cdx.Source": ("change_version", "ts_ms"), "cdx.Position": ("offset",)}
    read = compile_reader(rs.value.to_dict(), kept)
    assert read is not None
    got = read(body, 0)
    assert got["source"] == {"ts_ms": SRC.ts_ms, "change_version": SRC.change_version}
    assert got["position"] == {"offset": 5}
    assert {k: v for k, v in got.items() if k not in ("source", "position")} == \
        {k: v for k, v in full.items() if k not in ("source", "position")}
    skipped_all = compile_reader(rs.value.to_dict(), {"routed.ax.P.Value": (), "cdx.Source": ()})
    assert skipped_all is not None
    assert skipped_all(body, 0)["after"] == {}
    with pytest.raises(DecodeError):
        read(body[:-1], 0)


def test_result_builds_the_return_value_from_the_field_variables() -> None:
    cols = (Column("ID", L.INT64, primary_key=True), Column("S", L.STRING))
    rs = routed_schemas("ax", "P", cols)
    value = make_value(rs, op="c", key={"ID": 1}, row={"ID": 1, "S": "x"}, source=SRC.to_avro(), ts_ms=9,
                       subjob="S", position=SourcePosition("t", 0, 5))
    body = write_body(rs.value, value)
    seen: dict[str, str] = {}

    def result(fields: Any) -> tuple[list[str], dict[str, Any]]:
        seen.update(fields)
        return [f"out = _mark, {fields['position.offset']}, {fields['after']}, {fields['after.S']}"
                f" if {fields['after']} is not None else None, {fields['position']!r} in dir()"], {"_mark": "m"}

    read = compile_reader(rs.value.to_dict(), flat=("cdx.Position", "routed.ax.P.Envelope"), result=result)
    assert read is not None
    assert read(body, 0) == ("m", 5, {"ID": 1, "S": "x"}, "x", False)  # flat: no dict built for ``position``
    assert {"before", "before.ID", "after.S", "source.ts_ms", "position.topic", "filter", "filter.value"} <= set(seen)
    assert compile_reader(rs.value.to_dict(), result=lambda fields: (["out = ("], {})) is None  # not Python
    with pytest.raises(DecodeError):
        read(body[:-1], 0)


def test_decimal_values_are_kept_and_shared_up_to_a_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    from cdx.codec import fastread

    monkeypatch.setattr(fastread, "DECIMALS_KEPT", 2)
    schema = {"type": "array", "items": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}}
    values = [decimal.Decimal(x) for x in ("1.50", "-1.50", "1.50", "0.00", "0.00", "-0.01", "-1.50")]
    got = same(schema, values, plain=True)
    assert got[0] is got[2] and got[1] is got[6]  # kept: the same object again
    assert got[3] is not got[4]  # past the bound: converted each time
