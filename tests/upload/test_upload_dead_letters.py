"""Malformed rows go to the dead-letter topic with the reason and never block: rows the channel
upload cannot read or encode, and records the HQ upload sink cannot use (undecodable, another
channel's, refused by the HQ database). Everything else still arrives, once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from cdx.connectors.upload import sessions as hist
from cdx.connectors.upload.records import KEY_SCHEMA, SUBJOB_HEADER, upload_envelope
from cdx.connectors.upload.uploader import UploadConnector
from cdx.demo.retail_schema import CHANNEL_UPLOAD_TABLES, insert_sql
from cdx.dialects import connect, get_dialect
from cdx.topics import upload_topic
from tests.upload.helpers import (
    assert_channel_at_hq,
    create_databases,
    dead_letters,
    expected_rows,
    fresh_pg,
    hq_count,
    make_topology,
    sell,
    wait_until,
)

pytestmark = pytest.mark.integration

HEADER = CHANNEL_UPLOAD_TABLES["RETAILTRANSACTIONTABLE"]


def bad_header(path: Path, txn: str, gross: str) -> None:
    """A header whose GROSSAMOUNT is stored as ``gross`` (SQLite keeps whatever text it is given)."""
    d = get_dialect("sqlite")
    conn = d.connect(str(path))
    cols = ["DATAAREAID", "CHANNEL", "STORE", "TERMINAL", "TRANSACTIONID", "TYPE", "STAFF", "CURRENCY",
            "GROSSAMOUNT", "NETAMOUNT", "TRANSDATE", "TRANSTIME", "CREATEDDATETIME"]
    with d.transaction(conn):
        conn.execute(insert_sql(d, "ax", HEADER, cols), ["usrt", 5637144576, "d01", "d01-pos-09", txn, 2, "000001",
                                                         "USD", gross, "1.00", "2026-01-01", 0,
                                                         "2026-01-01 00:00:00.000000"])
    conn.close()


def test_unreadable_channel_rows_are_dead_lettered(tmp_path: Path, kafka: str, postgres_server: str,
                                                   running) -> None:
    topo = make_topology(tmp_path, kafka, fresh_pg(postgres_server, "dlqup"), ["d01"])
    create_databases(topo)
    sell(topo, "d01", 5, seed=1)
    bad_header(tmp_path / "d01.db", "BAD-TEXT", "abc")                  # not a number
    bad_header(tmp_path / "d01.db", "BAD-WIDE", "123456789012345678901")  # more digits than numeric(32,16)
    sell(topo, "d01", 5, seed=2)
    run = running(topo)
    want = expected_rows(topo) - 2
    wait_until(lambda: hq_count(topo) >= want and len(dead_letters(topo)) >= 2, 60, "rows and dead letters",
               check=run.check)
    time.sleep(0.5)
    run.stop()
    assert hq_count(topo) == want
    letters = sorted(dead_letters(topo), key=lambda x: x["extra"]["counter"])
    assert [(x["component"], x["channel"], x["table"], x["extra"]["row"]["TRANSACTIONID"]) for x in letters] == [
        ("upload", "d01", "ax.RETAILTRANSACTIONTABLE", "BAD-TEXT"),
        ("upload", "d01", "ax.RETAILTRANSACTIONTABLE", "BAD-WIDE")]
    assert "cannot read the row" in letters[0]["error"]
    assert "GROSSAMOUNT" in letters[1]["error"] and "decimal(32,16)" in letters[1]["error"]
    header = next(t for t in run.upload.uploaders[0].tables if t.subjob.id == "RetailTransactionTable")
    assert header.position.low == header.position.high == 12  # not stuck behind the bad rows


def test_unusable_records_are_dead_lettered_by_the_hq_sink(tmp_path: Path, kafka: str, postgres_server: str,
                                                           running) -> None:
    hq_dsn = fresh_pg(postgres_server, "dlqsink")
    topo = make_topology(tmp_path, kafka, hq_dsn, ["d02", "d03"])
    create_databases(topo)
    # records written straight to d02's upload topic with the upload connector's own producer and schemas
    connector = UploadConnector(topo, ["d02"])
    connector.setup()
    up = connector.uploaders[0]
    up.target.open()
    up.source.open()
    assert up.producer is not None and up.codec is not None
    t = next(t for t in up.tables if t.subjob.id == "RetailTransactionTable")
    topic = upload_topic(topo.kafka.topic_prefix, "d02")
    row = {"DATAAREAID": "usrt", "TRANSACTIONID": "OK-1", "STORE": "d02", "TERMINAL": "d02-pos-09",
           "CHANNEL": 5637144576, "TYPE": 2, "CUSTACCOUNT": None, "STAFF": "000001", "CURRENCY": "USD",
           "GROSSAMOUNT": "1.00", "NETAMOUNT": "1.00", "TRANSDATE": "2026-01-01", "TRANSTIME": 0,
           "REPLICATIONCOUNTERFROMORIGIN": 1001, "CONTOSORETAILSEATNUMBER": None, "CONTOSORETAILSERVERSTAFFID": None}

    def record(counter: int, channel: str = "d02", **changes: object) -> tuple[bytes, bytes]:
        values = {**row, **changes, "REPLICATIONCOUNTERFROMORIGIN": counter}
        import datetime as dt
        from decimal import Decimal

        values["GROSSAMOUNT"] = values["NETAMOUNT"] = Decimal("1.00")
        values["TRANSDATE"] = dt.date(2026, 1, 1)
        key = up.codec.encode_key(topic, KEY_SCHEMA, {"table": "ax.RETAILTRANSACTIONTABLE",  # type: ignore
                                                      "counter": counter})
        value = up.codec.encode_value(topic, t.schemas.value, upload_envelope(  # type: ignore[union-attr]
            channel, "ax", "RETAILTRANSACTIONTABLE", counter, values, 0))
        return key, value  # type: ignore[return-value]

    up.producer.begin()
    for key, value in [record(1001),
                       (record(1002)[0], b"\xc3\x01 not avro"),
                       record(1003, TRANSACTIONID="LONG", STORE="x" * 100),  # HQ STORE is varchar(40)
                       record(1004, channel="d03", TRANSACTIONID="SPOOF"),
                       record(1005, TRANSACTIONID="OK-2")]:
        up.producer.produce(topic, value, key=key, partition=t.partition,
                            headers=[(SUBJOB_HEADER, b"RetailTransactionTable")])
    up.producer.commit()
    up.close()

    sell(topo, "d02", 5, seed=3)
    sell(topo, "d03", 5, seed=4)
    run = running(topo)
    want = expected_rows(topo) + 2
    wait_until(lambda: hq_count(topo) >= want and len(dead_letters(topo)) >= 3, 60, "rows and dead letters",
               check=run.check)
    time.sleep(0.5)
    run.stop()
    assert hq_count(topo) == want
    for c in ("d03",):
        assert_channel_at_hq(topo, c)
    with connect("postgresql", hq_dsn) as conn:
        oks = conn.execute('SELECT "TRANSACTIONID", "CDXORIGINID" FROM dbo."RETAILTRANSACTIONTABLE"'
                           ' WHERE "TRANSACTIONID" LIKE %s ORDER BY 1', ("OK-%",)).fetchall()
        assert oks == [("OK-1", "d02"), ("OK-2", "d02")]
        totals = {s.channel: s for s in hist.summary(conn, get_dialect("postgresql"))}
    letters = sorted(dead_letters(topo), key=lambda x: x["source"]["offset"])
    assert [(x["component"], x["channel"], x["extra"].get("counter")) for x in letters] == [
        ("upload-sink", "d02", None), ("upload-sink", "d02", 1003), ("upload-sink", "d02", 1004)]
    assert "undecodable" in letters[0]["error"] and letters[0]["record"]["value_b64"]
    assert "refused by HQ" in letters[1]["error"]
    assert "came on channel 'd02'" in letters[2]["error"]
    assert totals["d02"].rows_dead_lettered == 3 and totals["d03"].rows_dead_lettered == 0
