"""The capture's spliced envelope encoding gives exactly the bytes of encoding the whole envelope."""

from __future__ import annotations

import datetime as dt
import functools
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdx.codec import Column, LogicalType, SingleObjectCodec, TableSchemas
from cdx.codec.binary import avro_long
from cdx.codec.envelope import Op
from cdx.codec.errors import EncodeError
from cdx.connectors.capture.records import ChangeEncoder

COLUMNS = (
    Column("ID", LogicalType.INT64, nullable=False, primary_key=True),
    Column("DATAAREAID", LogicalType.STRING, nullable=False, length=4),
    Column("NAME", LogicalType.STRING, length=60),
    Column("PRICE", LogicalType.DECIMAL, precision=18, scale=4),
    Column("VER", LogicalType.INT64),
    Column("MODIFIED", LogicalType.TIMESTAMP),
    Column("DAY", LogicalType.DATE),
    Column("OK", LogicalType.BOOL),
)
LONGS = st.integers(min_value=-(2**63), max_value=2**63 - 1)
ROWS = st.fixed_dictionaries({
    "ID": LONGS,
    "DATAAREAID": st.text(max_size=4),
    "NAME": st.none() | st.text(max_size=60),
    "PRICE": st.none() | st.decimals(min_value=-(10**13), max_value=10**13, places=4, allow_nan=False),
    "VER": st.none() | LONGS,
    "MODIFIED": st.none() | st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2200, 1, 1)),
    "DAY": st.none() | st.dates(),
    "OK": st.none() | st.booleans(),
})


@functools.cache
def encoders() -> tuple[SingleObjectCodec, TableSchemas, ChangeEncoder]:
    codec = SingleObjectCodec()
    schemas = TableSchemas.build("t.dbo.ITEMS", COLUMNS)
    codec.store.register(schemas.key)
    codec.store.register(schemas.value)
    return codec, schemas, ChangeEncoder(codec, "t.dbo.ITEMS", schemas, hq_name="hq", schema="dbo", table="ITEMS")


@settings(max_examples=100, deadline=None)
@given(row=ROWS, op=st.sampled_from([Op.CREATE, Op.UPDATE, Op.READ]), version=LONGS,
       now=st.integers(min_value=0, max_value=2**50), snapshot=st.sampled_from(["false", "true", "last"]))
def test_spliced_value_is_the_whole_envelope_encoded(row, op, version, now, snapshot) -> None:
    codec, schemas, enc = encoders()
    key = {"ID": row["ID"]}
    key_bytes, value = enc.encode(op, key, row, version, now, snapshot)
    assert key_bytes == codec.encode_key("t", schemas.key, key)
    assert value == codec.encode_value("t", schemas.value, enc.envelope(op, key, row, version, now, snapshot))
    decoded = codec.decode_value("t", value)
    assert decoded is not None and decoded["after"]["ID"] == row["ID"]


def test_delete_and_bad_values_take_the_general_path_and_errors() -> None:
    codec, _schemas, enc = encoders()
    key = {"ID": 5}
    _, value = enc.encode(Op.DELETE, key, None, 9, 1000)
    decoded = codec.decode_value("t", value)
    assert decoded is not None and decoded["op"] == "d"
    with pytest.raises(EncodeError, match="PRICE"):
        enc.encode(Op.CREATE, key, {"ID": 5, "DATAAREAID": "x", "PRICE": Decimal("1.00001")}, 9, 1000)


@given(LONGS)
def test_avro_long_is_fastavros(n: int) -> None:
    import io

    import fastavro
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, "long", n)
    assert avro_long(n) == buf.getvalue()
