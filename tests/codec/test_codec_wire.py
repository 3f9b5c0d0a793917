"""Both wire formats: exact bytes, round trips (property-based), errors."""

from __future__ import annotations

import datetime as dt
import decimal
import itertools
import uuid
from typing import Any

import fastavro
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdx.codec import (
    Column,
    ConnectJsonCodec,
    LogicalType,
    SchemaStore,
    SingleObjectCodec,
    SourceInfo,
    TableSchemas,
    make_codec,
    make_envelope,
)
from cdx.codec.codec import Codec
from cdx.codec.errors import DecodeError, EncodeError, SkippableError, UnknownSchemaError
from cdx.codec.registry import RegistryCodec
from cdx.codec.single_object import frame, unframe
from tests.codec.codec_strategies import columns, expected, row_for

L = LogicalType
SRC = SourceInfo("sqlserver", "hq", "AxDB", "dbo", "T", 7, 1_700_000_000_000)
_topics = itertools.count()


def _registry_codec() -> RegistryCodec:
    codec = make_codec({"schema_registry.url": "mock://cdx-test"})
    assert isinstance(codec, RegistryCodec)
    return codec


def test_mock_url_needs_new_client() -> None:
    # Verified: a plain SchemaRegistryClient does not understand mock://; new_client() returns the mock.
    client = SchemaRegistryClient.new_client({"url": "mock://x"})
    assert type(client).__name__ == "MockSchemaRegistryClient"
    assert isinstance(make_codec({"schema_registry.url": "mock://y"}), RegistryCodec)
    assert isinstance(make_codec({}), SingleObjectCodec)
    assert isinstance(make_codec({}), Codec)


def test_single_object_bytes_are_exactly_as_the_spec_says() -> None:
    ts = TableSchemas.build("t", [Column("id", L.INT64, primary_key=True)])
    data = SingleObjectCodec().encode_key("t", ts.key, {"id": 1})
    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == ts.key.fingerprint
    assert data[10:] == b"\x02"  # zig-zag varint of 1
    # fastavro reads the body with the schema
    import io

    assert fastavro.schemaless_reader(io.BytesIO(data[10:]), ts.key.parsed, None) == {"id": 1}


def test_registry_bytes_are_magic_zero_and_schema_id() -> None:
    codec = _registry_codec()
    ts = TableSchemas.build("t", [Column("id", L.INT64, primary_key=True)])
    data = codec.encode_key("orders", ts.key, {"id": 1})
    schema_id = codec.client.get_latest_version("orders-key").schema_id
    assert data[0] == 0 and int.from_bytes(data[1:5], "big") == schema_id and data[5:] == b"\x02"
    assert codec.decode_key("orders", data) == {"id": 1}
    assert codec.writer_schema("orders", data, is_key=True) == ts.key
    assert sorted(codec.client.get_subjects()) == ["orders-key"]


def _mixed_table() -> TableSchemas:
    return TableSchemas.build("hq.dbo.T", [
        Column("id", L.UUID, primary_key=True),
        Column("amount", L.DECIMAL, precision=10, scale=2),
        Column("at", L.TIMESTAMP),
        Column("day", L.DATE),
        Column("n", L.INT32),
        Column("s", L.STRING),
    ])


@pytest.mark.parametrize("make", [SingleObjectCodec, _registry_codec, ConnectJsonCodec],
                         ids=["single-object", "registry", "connect-json"])
def test_decoded_python_types(make: Any) -> None:
    codec = make()
    ts = _mixed_table()
    u = uuid.uuid4()
    row = {"id": str(u).upper(), "amount": decimal.Decimal("12.5"), "at": dt.datetime(2024, 5, 6, 7, 8, 9, 10),
           "day": dt.date(2024, 5, 6), "n": 3, "s": "x"}
    out = codec.decode_value("t", codec.encode_value("t", ts.value, make_envelope("c", after=row, source=SRC,
                                                                                    ts_ms=1)))
    after = out["after"]
    assert after["id"] == u
    assert isinstance(after["amount"], decimal.Decimal) and after["amount"] == decimal.Decimal("12.50")
    assert after["at"] == dt.datetime(2024, 5, 6, 7, 8, 9, 10, tzinfo=dt.UTC) and after["at"].tzinfo is not None
    assert after["day"] == dt.date(2024, 5, 6) and not isinstance(after["day"], dt.datetime)
    assert out["source"] == SRC.to_avro() and out["op"] == "c" and out["before"] is None
    # keys: same UUID in any spelling gives the same bytes (same partition, compaction works)
    k1 = codec.encode_key("t", ts.key, {"id": u})
    k2 = codec.encode_key("t", ts.key, {"id": "{" + str(u).upper() + "}"})
    assert k1 == k2
    assert codec.encode_value("t", ts.value, None) is None
    assert codec.decode_value("t", None) is None


@pytest.mark.parametrize("make", [SingleObjectCodec, _registry_codec, ConnectJsonCodec],
                         ids=["single-object", "registry", "connect-json"])
@pytest.mark.parametrize(("column", "bad"), [
    (Column("v", L.INT32), 2**31),
    (Column("v", L.INT32), 1.5),
    (Column("v", L.INT64), "12"),
    (Column("v", L.DECIMAL, precision=5, scale=2), decimal.Decimal("1.234")),
    (Column("v", L.DECIMAL, precision=5, scale=2), decimal.Decimal("12345.6")),
    (Column("v", L.DECIMAL, precision=5, scale=2), decimal.Decimal("NaN")),
    (Column("v", L.UUID), "not-a-uuid"),
    (Column("v", L.TIMESTAMP), "2024-01-01"),
    (Column("v", L.STRING), 5),
    (Column("v", L.BOOL), "yes"),
])
def test_values_that_do_not_fit_are_skippable_encode_errors(make: Any, column: Column, bad: Any) -> None:
    ts = TableSchemas.build("t", [Column("id", L.INT32, primary_key=True), column])
    env = make_envelope("c", after={"id": 1, "v": bad}, source=SRC, ts_ms=1)
    with pytest.raises(EncodeError) as info:
        make().encode_value("t", ts.value, env)
    assert isinstance(info.value, SkippableError) and "v" in info.value.reason


def test_decode_errors_are_typed() -> None:
    store = SchemaStore()
    codec = SingleObjectCodec(store)
    ts = TableSchemas.build("t", [Column("id", L.INT64, primary_key=True)])
    good = codec.encode_key("t", ts.key, {"id": 5})
    with pytest.raises(UnknownSchemaError) as info:
        SingleObjectCodec(SchemaStore()).decode_key("t", good)
    assert isinstance(info.value, SkippableError) and info.value.schema_ref == ts.key.fingerprint_hex
    with pytest.raises(DecodeError, match="Confluent"):
        codec.decode_key("t", b"\x00\x00\x00\x00\x01\x02")
    with pytest.raises(DecodeError, match="single-object"):
        codec.decode_key("t", b"junk")
    with pytest.raises(DecodeError):
        codec.decode_key("t", good[:-1] + b"\xff\xff")  # truncated varint
    with pytest.raises(DecodeError, match="trailing"):
        codec.decode_key("t", good + b"\x00")
    with pytest.raises(DecodeError, match="single-object encoded"):
        _registry_codec().decode_key("t", good)
    with pytest.raises(DecodeError):
        codec.decode_key("t", None)  # type: ignore[arg-type]
    assert unframe(frame(b"\x01" * 8, b"xy")) == (b"\x01" * 8, memoryview(b"xy"))


def _check_round_trip(codec: Codec, topic: str, cols: list[Column], row: dict[str, Any]) -> None:
    ts = TableSchemas.build(topic, cols)
    key = ts.key_of(row)
    for env in (make_envelope("c", after=row, source=SRC, ts_ms=1),
                make_envelope("u", before=row, after=row, source=SRC, ts_ms=2),
                make_envelope("d", before=key, source=SRC, ts_ms=3)):
        k = codec.encode_key(topic, ts.key, key)
        v = codec.encode_value(topic, ts.value, env)
        assert v is not None
        assert codec.decode_key(topic, k) == expected(key)
        out = codec.decode_value(topic, v)
        assert out is not None
        want = expected(env)
        if env["op"] == "d":
            want["before"] = {c.field: want["before"].get(c.field) for c in cols}
        assert out == want
        assert codec.writer_schema(topic, v) == ts.value
        assert codec.writer_schema(topic, k, is_key=True) == ts.key


@st.composite
def _table_and_row(draw: st.DrawFn) -> tuple[list[Column], dict[str, Any]]:
    cols = draw(columns())
    return cols, draw(row_for(cols))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=_table_and_row())
def test_round_trip_single_object(data: tuple[list[Column], dict[str, Any]]) -> None:
    cols, row = data
    _check_round_trip(SingleObjectCodec(), "hq.dbo.T", cols, row)


@settings(max_examples=75, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=_table_and_row())
def test_round_trip_registry(data: tuple[list[Column], dict[str, Any]]) -> None:
    cols, row = data
    _check_round_trip(_registry_codec(), f"hq.dbo.T{next(_topics)}", cols, row)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=_table_and_row())
def test_round_trip_connect_json(data: tuple[list[Column], dict[str, Any]]) -> None:
    cols, row = data
    _check_round_trip(ConnectJsonCodec(), "hq.dbo.T", cols, row)
