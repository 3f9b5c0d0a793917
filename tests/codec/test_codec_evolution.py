"""Schema evolution: adding a nullable column, read in both directions, both wire formats; and the
fingerprint-collision guard (changes the canonical form cannot see)."""

from __future__ import annotations

import decimal
from typing import Any

import pytest

from cdx.codec import (
    Column,
    LogicalType,
    SchemaStore,
    SingleObjectCodec,
    SourceInfo,
    TableSchemas,
    make_codec,
    make_envelope,
)
from cdx.codec.errors import DecodeError, SchemaConflictError

L = LogicalType
SRC = SourceInfo("sqlserver", "hq", "AxDB", "dbo", "InventTable", 1, 1)
V1 = [Column("ITEMID", L.STRING, primary_key=True), Column("NAME", L.STRING)]
V2 = [*V1, Column("PRICE", L.DECIMAL, precision=18, scale=2)]


def _codecs() -> list[tuple[str, Any, Any]]:
    """(name, producer-side codec, consumer-side codec) per wire format."""
    store = SchemaStore()  # shared: stands in for the schemas topic
    registry = make_codec({"schema_registry.url": "mock://evolution"})
    return [("single-object", SingleObjectCodec(store), SingleObjectCodec(store)),
            ("registry", registry, registry)]


@pytest.mark.parametrize("index", [0, 1], ids=["single-object", "registry"])
def test_adding_a_nullable_column(index: int) -> None:
    _, producer, consumer = _codecs()[index]
    topic = "hq.dbo.InventTable"
    s1, s2 = TableSchemas.build(topic, V1), TableSchemas.build(topic, V2)
    assert s1.value.fingerprint != s2.value.fingerprint
    assert s1.key.fingerprint == s2.key.fingerprint  # key bytes stay stable across the change

    old = producer.encode_value(topic, s1.value, make_envelope(
        "c", after={"ITEMID": "A", "NAME": "old"}, source=SRC, ts_ms=1))
    new = producer.encode_value(topic, s2.value, make_envelope(
        "c", after={"ITEMID": "B", "NAME": "new", "PRICE": decimal.Decimal("9.99")}, source=SRC, ts_ms=2))

    # An old reader (holding only V1) reads new records: the new field is dropped.
    assert consumer.decode_value(topic, new, reader=s1.value)["after"] == {"ITEMID": "B", "NAME": "new"}
    # A new reader reads old records: the missing field takes its default, null.
    assert consumer.decode_value(topic, old, reader=s2.value)["after"] == {"ITEMID": "A", "NAME": "old",
                                                                           "PRICE": None}
    # Without a reader schema each record decodes with its own writer schema.
    assert "PRICE" not in consumer.decode_value(topic, old)["after"]
    assert consumer.decode_value(topic, new)["after"]["PRICE"] == decimal.Decimal("9.99")
    # Keys written before and after the change are the same bytes.
    assert producer.encode_key(topic, s1.key, {"ITEMID": "A"}) == producer.encode_key(topic, s2.key, {"ITEMID": "A"})


def test_incompatible_reader_is_a_decode_error() -> None:
    codec = SingleObjectCodec()
    s1 = TableSchemas.build("t", V1)
    other = TableSchemas.build("t", [Column("ITEMID", L.INT64, primary_key=True)])
    data = codec.encode_key("t", s1.key, {"ITEMID": "A"})
    with pytest.raises(DecodeError):
        codec.decode_key("t", data, reader=other.key)


def test_decimal_scale_change_moves_the_value_schema_to_a_new_generation() -> None:
    store = SchemaStore()
    topic = "hq.dbo.InventTable"
    a = store.register_table(topic, V2)
    changed = [*V1, Column("PRICE", L.DECIMAL, precision=18, scale=4)]
    naive = TableSchemas.build(topic, changed)
    # Same canonical form, same fingerprint, different meaning: refused as such...
    assert naive.value.fingerprint == a.value.fingerprint
    with pytest.raises(SchemaConflictError):
        store.register(naive.value)
    # ...and register_table picks the next generation for the value schema only.
    b = store.register_table(topic, changed)
    assert (b.key_generation, b.value_generation) == (0, 1)
    assert b.key == a.key
    assert b.value.to_dict()["namespace"] == "hq.dbo.InventTable.g1"
    assert b.value.fingerprint != a.value.fingerprint
    # Deterministic: the same history gives the same answer; the old columns stay at generation 0.
    assert store.register_table(topic, changed) == b
    assert store.register_table(topic, V2) == a

    codec: Any = SingleObjectCodec(store)
    old = codec.encode_value(topic, a.value, make_envelope(
        "c", after={"ITEMID": "A", "PRICE": decimal.Decimal("12.34")}, source=SRC, ts_ms=1))
    new = codec.encode_value(topic, b.value, make_envelope(
        "c", after={"ITEMID": "A", "PRICE": decimal.Decimal("12.3456")}, source=SRC, ts_ms=1))
    assert codec.decode_value(topic, old)["after"]["PRICE"] == decimal.Decimal("12.34")
    assert codec.decode_value(topic, new)["after"]["PRICE"] == decimal.Decimal("12.3456")
    # Generations read each other (records are matched by unqualified name).
    assert codec.decode_value(topic, old, reader=b.value)["after"]["PRICE"] == decimal.Decimal("12.34")


def test_widening_a_string_also_gets_a_new_generation() -> None:
    store = SchemaStore()
    a = store.register_table("t", [Column("id", L.INT32, primary_key=True), Column("s", L.STRING, length=10)])
    b = store.register_table("t", [Column("id", L.INT32, primary_key=True), Column("s", L.STRING, length=40)])
    assert b.value_generation == 1 and b.value != a.value and b.key == a.key
