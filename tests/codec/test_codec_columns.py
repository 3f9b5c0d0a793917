"""Column <-> Avro type mapping, both ways, and column validation."""

from __future__ import annotations

import pytest
from hypothesis import given, settings

from cdx.codec.columns import (
    Column,
    LogicalType,
    avro_field_to_column,
    avro_type_to_column,
    check_unique_fields,
    column_avro_type,
    column_field,
)
from cdx.codec.errors import SchemaError
from cdx.codec.naming import avro_name, namespace_for
from tests.codec.codec_strategies import columns

L = LogicalType


@pytest.mark.parametrize(("column", "avro"), [
    (Column("a", L.INT32), "int"),
    (Column("a", L.INT64), "long"),
    (Column("a", L.FLOAT64), "double"),
    (Column("a", L.DECIMAL, precision=19, scale=4),
     {"type": "bytes", "logicalType": "decimal", "precision": 19, "scale": 4}),
    (Column("a", L.STRING), "string"),
    (Column("a", L.STRING, length=10), {"type": "string", "cdx.length": 10}),
    (Column("a", L.BOOL), "boolean"),
    (Column("a", L.BYTES), "bytes"),
    (Column("a", L.BYTES, length=16), {"type": "bytes", "cdx.length": 16}),
    (Column("a", L.DATE), {"type": "int", "logicalType": "date"}),
    (Column("a", L.TIMESTAMP), {"type": "long", "logicalType": "timestamp-micros"}),
    (Column("a", L.UUID), {"type": "string", "logicalType": "uuid"}),
])
def test_avro_types(column: Column, avro: object) -> None:
    assert column_avro_type(column) == avro
    assert column_field(column) == {"name": "a", "type": ["null", avro], "default": None}
    pk = Column("a", column.type, primary_key=True, precision=column.precision, scale=column.scale,
                length=column.length)
    assert column_field(pk) == {"name": "a", "type": avro}
    assert avro_type_to_column("a", ["null", avro]) == column
    assert avro_type_to_column("a", avro, primary_key=True) == pk


def test_primary_key_is_never_nullable() -> None:
    c = Column("id", L.INT64, nullable=True, primary_key=True)
    assert c.nullable is False


def test_type_given_as_string_is_coerced() -> None:
    assert Column("a", "int64").type is L.INT64  # type: ignore[arg-type]


@pytest.mark.parametrize("kwargs", [
    {"name": "", "type": L.INT32},
    {"name": "a", "type": "money"},
    {"name": "a", "type": L.DECIMAL},
    {"name": "a", "type": L.DECIMAL, "precision": 5, "scale": 6},
    {"name": "a", "type": L.DECIMAL, "precision": 0, "scale": 0},
    {"name": "a", "type": L.INT32, "precision": 10},
    {"name": "a", "type": L.INT32, "length": 10},
    {"name": "a", "type": L.STRING, "length": 0},
])
def test_invalid_columns(kwargs: dict[str, object]) -> None:
    with pytest.raises(SchemaError):
        Column(**kwargs)  # type: ignore[arg-type]


def test_odd_column_names_keep_their_name_in_the_schema() -> None:
    c = Column("Order Date", L.DATE)
    assert c.field == "Order_Date"
    f = column_field(c)
    assert f["name"] == "Order_Date" and f["cdx.column"] == "Order Date"
    assert avro_field_to_column(f) == c
    assert avro_name("1st") == "_1st" and avro_name("a-b.c") == "a_b_c" and avro_name("ok_1") == "ok_1"


def test_clashing_or_duplicate_columns_are_refused() -> None:
    with pytest.raises(SchemaError, match="both map"):
        check_unique_fields([Column("a b", L.INT32), Column("a_b", L.INT32)])
    with pytest.raises(SchemaError, match="duplicate"):
        check_unique_fields([Column("a", L.INT32), Column("a", L.INT64)])


def test_other_producers_types() -> None:
    assert avro_type_to_column("f", "float").type is L.FLOAT64
    assert avro_type_to_column("t", {"type": "long", "logicalType": "timestamp-millis"}).type is L.TIMESTAMP
    fixed = {"type": "fixed", "name": "D", "size": 8, "logicalType": "decimal", "precision": 18, "scale": 2}
    assert avro_type_to_column("d", fixed) == Column("d", L.DECIMAL, nullable=False, precision=18, scale=2)
    with pytest.raises(SchemaError):
        avro_type_to_column("x", {"type": "array", "items": "int"})
    with pytest.raises(SchemaError):
        avro_type_to_column("x", ["null", "int", "string"])


def test_namespaces() -> None:
    assert namespace_for("hq.dbo.InventTable") == "hq.dbo.InventTable"
    assert namespace_for("cdx-hq.dbo.Retail Store") == "cdx_hq.dbo.Retail_Store"
    assert namespace_for("t", generation=2) == "t.g2"
    with pytest.raises(SchemaError):
        namespace_for("...")


@settings(max_examples=200, deadline=None)
@given(cols=columns())
def test_column_field_round_trip(cols: list[Column]) -> None:
    for c in cols:
        back = avro_field_to_column(column_field(c), primary_key=c.primary_key)
        # Non-key columns are always nullable in Avro (so deletes can carry the key only).
        expected = c if c.primary_key else Column(c.name, c.type, True, False, c.precision, c.scale, c.length)
        assert back == expected
