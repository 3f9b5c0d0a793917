"""Kafka Connect JSON specifics: the exact Connect schema names, a real Debezium record, errors, the
topology's ``kafka.encoding`` (round trips of all three encodings are in ``test_codec_wire``)."""

from __future__ import annotations

import copy
import datetime as dt
import decimal
import json
from pathlib import Path
from typing import Any

import pytest

from cdx.codec import Column, ConnectJsonCodec, LogicalType, SourceInfo, TableSchemas, make_codec, make_envelope
from cdx.codec.envelope import columns_from_schemas, source_block
from cdx.codec.errors import DecodeError, SkippableError
from cdx.codec.sniff import AnyDecoder, encoding_of, key_matches, to_json
from cdx.routed import parse_value
from cdx.topology import Topology, parse_topology
from cdx.topology.dump import data_to_yaml
from cdx.topology.issues import TopologyError
from tests.topology.conftest import MINIMAL

L = LogicalType
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "debezium" / "postgres-update.json"
SRC = SourceInfo("cdx", "hq", "hq", "dbo", "ITEMS", 1234, 1_796_610_076_706)


def _table() -> TableSchemas:
    return TableSchemas.build("cdx.hq.dbo.ITEMS", [
        Column("ITEMID", L.STRING, primary_key=True, length=20), Column("PRICE", L.DECIMAL, precision=18, scale=4),
        Column("UPDATED", L.TIMESTAMP), Column("AVAILABLE", L.DATE), Column("ID", L.UUID),
        Column("Order Date", L.DATE)])


def test_connect_schema_uses_connect_and_debezium_names() -> None:
    ts = _table()
    row = {"ITEMID": "I1", "PRICE": decimal.Decimal("2.5"), "UPDATED": dt.datetime(2026, 12, 1, 8, 0, 0, 5),
           "AVAILABLE": dt.date(1970, 1, 3), "ID": None, "Order_Date": None}
    doc = json.loads(ConnectJsonCodec().encode_value("t", ts.value, make_envelope("c", after=row, source=SRC,
                                                                                  ts_ms=1)) or b"")
    assert doc["schema"]["name"] == "cdx.hq.dbo.ITEMS.Envelope" and doc["schema"]["type"] == "struct"
    after = {f["field"]: f for f in next(f for f in doc["schema"]["fields"] if f["field"] == "after")["fields"]}
    assert after["PRICE"]["name"] == "org.apache.kafka.connect.data.Decimal"
    assert after["PRICE"]["parameters"] == {"scale": "4", "connect.decimal.precision": "18"}
    assert after["AVAILABLE"]["name"] == "org.apache.kafka.connect.data.Date"
    assert after["UPDATED"]["name"] == "io.debezium.time.MicroTimestamp"
    assert after["ID"]["name"] == "io.debezium.data.Uuid" and after["ID"]["optional"] is True
    assert after["ITEMID"]["optional"] is False and after["Order_Date"]["parameters"]["cdx.column"] == "Order Date"
    payload = doc["payload"]["after"]
    assert payload["PRICE"] == "Yag="  # 25000 unscaled, big-endian two's complement, base64
    assert payload["UPDATED"] == 1_796_112_000_000_005 and payload["AVAILABLE"] == 2
    source = doc["payload"]["source"]
    assert source["version"] == "0.1.0" and source["change_version"] == 1234 and source["snapshot"] == "false"


def test_a_real_debezium_postgres_record_decodes_like_a_cdx_one() -> None:
    rec = json.loads(FIXTURE.read_text())
    topic, key_raw, value_raw = rec["topic"], rec["key"].encode(), rec["value"].encode()
    codec = ConnectJsonCodec()
    key = codec.decode_key(topic, key_raw)
    value = codec.decode_value(topic, value_raw)
    assert value is not None and key == {"DATAAREAID": "usrt", "ITEMID": "I0000"}
    assert value["op"] == "u" and value["source"]["connector"] == "postgresql"
    after = value["after"]
    assert after["PRICE"] == decimal.Decimal("0.0001") and after["QTY"] is None
    assert after["UPDATED"] == dt.datetime(2026, 12, 1, 8, 30, 15, 123456, tzinfo=dt.UTC)
    assert after["AVAILABLE"] == dt.date(2026, 1, 1)
    cols = {c.name: c for c in columns_from_schemas(codec.writer_schema(topic, value_raw),
                                                     codec.writer_schema(topic, key_raw, is_key=True))}
    assert cols["PRICE"].type is L.DECIMAL and (cols["PRICE"].precision, cols["PRICE"].scale) == (18, 4)
    assert cols["UPDATED"].type is L.TIMESTAMP and cols["AVAILABLE"].type is L.DATE
    assert [c for c in cols.values() if c.primary_key] == [cols["DATAAREAID"], cols["ITEMID"]]
    src = source_block(value["source"])
    assert src["change_version"] == value["source"]["lsn"] and src["version"] == "3.6.0.Final"


def test_routed_values_keep_debezium_sources_in_cdx_shape() -> None:
    from cdx.routed import SourcePosition, make_value, routed_schemas

    rec = json.loads(FIXTURE.read_text())
    value = ConnectJsonCodec().decode_value(rec["topic"], rec["value"].encode())
    spaced = json.dumps(json.loads(rec["value"]))  # the same record with whitespace decodes the same
    assert ConnectJsonCodec().decode_value(rec["topic"], spaced.encode()) == value
    assert value is not None
    schemas = routed_schemas("ax", "ITEMS", (Column("ITEMID", L.STRING, primary_key=True),))
    routed = make_value(schemas, op="u", key={"ITEMID": "I0000"}, row={"ITEMID": "I0000"}, source=value["source"],
                        ts_ms=value["ts_ms"], subjob="Items", position=SourcePosition(rec["topic"], 0, 5))
    codec = ConnectJsonCodec()
    back = codec.decode_value("g", codec.encode_value("g", schemas.value, routed))
    assert back is not None and parse_value({"ITEMID": "I0000"}, back).version == value["source"]["lsn"]
    assert schemas.value.name == "routed.ax.ITEMS.Envelope"


@pytest.mark.parametrize(("data", "match"), [
    (b"\xc3\x01" + b"\x00" * 12, "not UTF-8"),
    (b"{not json", "not Kafka Connect JSON"),
    (b'{"a": 1}', "schemas.enable=false"),
    (b'{"schema": null, "payload": {"a": 1}}', "no Connect schema"),
    (b'{"schema": {"type": "struct", "fields": [{"type": "int32", "optional": false, "field": "a"}]},'
     b' "payload": {"a": "x"}}', None),
])
def test_undecodable_records_are_skippable(data: bytes, match: str | None) -> None:
    codec = ConnectJsonCodec()
    try:
        out = codec.decode_value("t", data)
    except DecodeError as e:
        assert isinstance(e, SkippableError)
        if match:
            assert match in str(e)
        return
    assert match is None and out == {"a": "x"}  # types are the writer's business, as with JsonConverter


def test_sniffing_tells_the_three_encodings_apart() -> None:
    ts, row = _table(), {"ITEMID": "I1"}
    codecs = {"avro": make_codec({}), "connect-json": make_codec({"encoding": "connect-json"}),
              "avro-registry": make_codec({"encoding": "avro-registry", "schema_registry.url": "mock://sniff"})}
    decoder = AnyDecoder(lambda enc: codecs[enc])
    for enc, codec in codecs.items():
        raw = codec.encode_key("t", ts.key, row)
        assert encoding_of(raw) == enc
        assert decoder.decode("t", raw, is_key=True) == (enc, row)
    assert decoder.decode("t", b'{"version": 7}') == ("json", {"version": 7})
    assert decoder.decode("t", None) == (None, None)
    assert key_matches({"ITEMID": "I1"}, "I1") and key_matches({"A": 1, "B": "x"}, "a=1,b=x")
    assert key_matches({"A": 1}, '{"A": 1}') and not key_matches({"A": 1, "B": 2}, "1")
    assert to_json({"d": decimal.Decimal("1.50"), "t": dt.date(2026, 1, 2)}) == {"d": "1.50", "t": "2026-01-02"}


def _topology(**kafka: Any) -> Topology:
    data = copy.deepcopy(MINIMAL)
    data["kafka"].update(kafka)
    return parse_topology(data_to_yaml(data))


def test_topology_encoding_and_codec_config() -> None:
    assert _topology().kafka.codec_config() == {"encoding": "avro"}
    assert _topology(encoding="connect-json").kafka.codec_config() == {"encoding": "connect-json"}
    reg = _topology(schema_registry={"url": "http://r:8081", "config": {"basic.auth.user.info": "u:p"}}).kafka
    assert reg.codec_config() == {"encoding": "avro-registry", "schema_registry.url": "http://r:8081",
                                  "schema_registry.basic.auth.user.info": "u:p"}
    assert isinstance(make_codec(_topology(encoding="connect-json").kafka.codec_config()), ConnectJsonCodec)
    for bad, says in (({"encoding": "avro-registry"}, "needs schema_registry.url"),
                      ({"encoding": "connect-json", "schema_registry": {"url": "http://r:8081"}}, "does not use"),
                      ({"encoding": "protobuf"}, "kafka.encoding")):
        with pytest.raises(TopologyError, match=says):
            _topology(**bad)


def test_source_topic_names_the_table_topic_and_is_checked() -> None:
    data = copy.deepcopy(MINIMAL)
    data["subjobs"][0]["source_topic"] = "dbz.dbo.INVENTTABLE"
    topo = parse_topology(data_to_yaml(data))
    assert topo.hq_table_topic("InventTable") == "dbz.dbo.INVENTTABLE"
    assert "dbz.dbo.INVENTTABLE" in topo.topics()
    data["subjobs"][1]["source_topic"] = "dbz.dbo.INVENTTABLE"
    data["subjobs"][2]["source_topic"] = "x"
    with pytest.raises(TopologyError) as info:
        parse_topology(data_to_yaml(data))
    text = str(info.value)
    assert "already the source of subjob 'InventTable'" in text and "only download subjobs" in text
