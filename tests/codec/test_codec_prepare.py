"""Value normalization: equal values give equal bytes, whatever the machine's time zone or UUID spelling."""

from __future__ import annotations

import datetime as dt
import decimal
import os
import time
import uuid
from collections.abc import Iterator

import pytest

from cdx.codec import Column, LogicalType, SingleObjectCodec, TableSchemas
from cdx.codec.prepare import compile_prepare

L = LogicalType


@pytest.fixture
def new_york() -> Iterator[None]:
    old = os.environ.get("TZ")
    os.environ["TZ"] = "America/New_York"
    time.tzset()
    try:
        yield
    finally:
        if old is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = old
        time.tzset()


def test_naive_timestamps_are_utc_whatever_the_local_zone(new_york: None) -> None:
    ts = TableSchemas.build("t", [Column("at", L.TIMESTAMP, primary_key=True)])
    codec = SingleObjectCodec()
    naive = codec.encode_key("t", ts.key, {"at": dt.datetime(2024, 1, 1, 12)})
    aware = codec.encode_key("t", ts.key, {"at": dt.datetime(2024, 1, 1, 12, tzinfo=dt.UTC)})
    est = dt.timezone(dt.timedelta(hours=-5))
    shifted = codec.encode_key("t", ts.key, {"at": dt.datetime(2024, 1, 1, 7, tzinfo=est)})
    micros = codec.encode_key("t", ts.key, {"at": 1704110400 * 1_000_000})
    assert naive == aware == shifted == micros
    assert codec.decode_key("t", naive) == {"at": dt.datetime(2024, 1, 1, 12, tzinfo=dt.UTC)}


def test_decimals_are_written_at_the_schema_scale() -> None:
    ts = TableSchemas.build("t", [Column("d", L.DECIMAL, primary_key=True, precision=38, scale=10)])
    codec = SingleObjectCodec()
    a = codec.encode_key("t", ts.key, {"d": decimal.Decimal("1.5")})
    b = codec.encode_key("t", ts.key, {"d": decimal.Decimal("1.5000000000")})
    c = codec.encode_key("t", ts.key, {"d": "1.50"})
    assert a == b == c
    big = decimal.Decimal("9" * 28 + "." + "9" * 10)  # 38 digits: beyond the default context's 28
    assert codec.decode_key("t", codec.encode_key("t", ts.key, {"d": big})) == {"d": big}


def test_uuid_spellings_and_dates() -> None:
    u = uuid.UUID("12345678-1234-5678-1234-567812345678")
    prep = compile_prepare({"type": "record", "name": "R", "fields": [
        {"name": "u", "type": ["null", {"type": "string", "logicalType": "uuid"}]},
        {"name": "d", "type": {"type": "int", "logicalType": "date"}},
    ]})
    assert prep is not None
    for spelling in (u, str(u).upper(), "{" + str(u) + "}", u.hex, u.bytes):
        # the union branch is named for fastavro (tuple notation)
        assert prep({"u": spelling, "d": dt.date(2020, 1, 1)})["u"] == ("string", str(u))
    assert prep({"u": None, "d": dt.datetime(2020, 1, 1, 23, 59)}) == {"u": None, "d": dt.date(2020, 1, 1)}


def test_schemas_without_logical_or_numeric_fields_need_no_pass() -> None:
    assert compile_prepare({"type": "record", "name": "R", "fields": [{"name": "s", "type": "string"}]}) is None


def test_decimal_bytes_are_minimal_twos_complement_like_avro_java() -> None:
    prep = compile_prepare({"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 0})
    assert prep is not None
    cases = {0: b"\x00", 1: b"\x01", 127: b"\x7f", 128: b"\x00\x80", -1: b"\xff", -128: b"\x80", -129: b"\xff\x7f",
             255: b"\x00\xff", 32767: b"\x7f\xff", -32768: b"\x80\x00"}
    for n, raw in cases.items():
        assert prep(decimal.Decimal(n)) == raw, n


def test_decimal_fast_path_gives_the_checked_paths_bytes_and_errors() -> None:
    """A Decimal goes through one exact multiplication; anything it cannot prove exact takes the checked path,
    so values, bytes and error messages are those of the full check."""
    from cdx.codec.errors import EncodeError
    from cdx.codec.prepare import _decimal

    prep, fixed = _decimal(18, 4), _decimal(9, 2, fixed_size=5)
    for text in ("0", "-0", "1.5", "-1.5", "123.4500", "99999999999999.9999", "-99999999999999.9999", "1E+3",
                 "0.0001", "-0.0001", "12E-4"):
        v = decimal.Decimal(text)
        n = int(v.scaleb(4))
        assert prep(v) == n.to_bytes((n if n >= 0 else ~n).bit_length() // 8 + 1, "big", signed=True), text
        assert prep(str(v)) == prep(v)  # strings take the checked path: same bytes
    assert fixed(decimal.Decimal("-12.5")) == (-1250).to_bytes(5, "big", signed=True)
    for bad, why in (("1.23456", "more than 4 decimal places"), ("100000000000000", "more than 18 digits"),
                     ("NaN", "cannot hold"), ("Infinity", "cannot hold"), ("1E+40", "does not fit"),
                     ("1." + "1" * 60, "more than 4 decimal places")):
        with pytest.raises(EncodeError, match=why):
            prep(decimal.Decimal(bad))
