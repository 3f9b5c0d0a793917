"""Per-record CPU of the capture's and the sink's own work, in process (no database, no broker), beside
fastavro writing and reading the same data with the same parsed schemas (the library's floor).

    python -m bench.records [--records 20000] [--runs 5]

Data: the rows of ``bench/e2e.py``'s PRODUCT table (DATAAREAID, ID, NAME, PRICE numeric(18,4), VER,
MODIFIED timestamp), as psycopg returns them (Decimal, naive datetime).

- **capture encode**: ``cdx.connectors.capture.records.ChangeEncoder.encode`` (the envelope, value
  preparation, Avro key and value, single-object framing) per change, as the capture runs it between
  reading a change and producing it. Baseline: ``fastavro.schemaless_writer`` of the already-prepared
  key and envelope (what is left when cdx adds nothing).
- **sink decode + plan**: ``cdx.connectors.sink.records.Decoder.decode`` of routed records (as the router
  writes them) then ``cdx.connectors.sink.plan.plan_batch`` and ``TableBatch.upserts`` (the rows handed to the
  dialect's bulk upsert), per record. Baseline: ``fastavro.schemaless_reader`` of the same bodies.

Reported in CPU microseconds per record (``time.process_time``; median of ``--runs``; lower is better)
and the ratio to the floor.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import fastavro

from bench.common import Result, console, save, show
from cdx.codec import Column, LogicalType, SingleObjectCodec, TableSchemas
from cdx.codec.envelope import Op
from cdx.codec.single_object import unframe
from cdx.connectors.capture.records import ChangeEncoder
from cdx.connectors.sink.plan import plan_batch
from cdx.connectors.sink.records import Decoder
from cdx.connectors.sink.spec import SinkSpec
from cdx.connectors.sink.state import SinkState
from cdx.routed import SourcePosition, make_value, routed_schemas

COLUMNS = (
    Column("ID", LogicalType.INT64, nullable=False, primary_key=True),
    Column("DATAAREAID", LogicalType.STRING, nullable=False, length=4),
    Column("NAME", LogicalType.STRING, length=60),
    Column("PRICE", LogicalType.DECIMAL, precision=18, scale=4),
    Column("VER", LogicalType.INT64),
    Column("MODIFIED", LogicalType.TIMESTAMP),
)
T0 = dt.datetime(2026, 1, 1)


def rows(n: int) -> list[dict[str, Any]]:
    return [{"ID": i, "DATAAREAID": "usrt", "NAME": f"product {i}", "PRICE": (Decimal(i % 100000) / 100).quantize(
        Decimal("0.0001")), "VER": 1, "MODIFIED": T0 + dt.timedelta(seconds=i)} for i in range(n)]


def per_record_us(runs: int, n: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        t = time.process_time()  # CPU time of this process: the figure survives a busy machine
        fn()
        times.append((time.process_time() - t) / n * 1e6)
    times.sort()
    return times[len(times) // 2]


def capture_case(n: int, runs: int) -> Result:
    codec = SingleObjectCodec()
    schemas = TableSchemas.build("bench.dbo.PRODUCT", COLUMNS)
    encoder = ChangeEncoder(codec, "bench.dbo.PRODUCT", schemas, hq_name="hq", schema="dbo", table="PRODUCT")
    data = rows(n)
    keys = [{"ID": r["ID"]} for r in data]
    now = int(time.time() * 1000)

    def cdx() -> None:
        for k, r in zip(keys, data, strict=True):
            encoder.encode(Op.CREATE, k, r, 7, now)

    prepared_values = [schemas.value.prepare(encoder.envelope(Op.CREATE, k, r, 7, now))  # type: ignore[misc]
                       for k, r in zip(keys, data, strict=True)]
    prepared_keys = [schemas.key.prepare(k) if schemas.key.prepare else k for k in keys]

    def floor() -> None:
        for k, v in zip(prepared_keys, prepared_values, strict=True):
            buf = io.BytesIO()
            fastavro.schemaless_writer(buf, schemas.key.parsed, k)
            buf = io.BytesIO()
            fastavro.schemaless_writer(buf, schemas.value.parsed, v)

    cdx_us, floor_us = per_record_us(runs, n, cdx), per_record_us(runs, n, floor)
    return Result("records", "capture: envelope + prepare + Avro key/value encode, per change", "us", cdx_us,
                  floor_us, "fastavro write of prepared data", runs)


def sink_case(n: int, runs: int) -> Result:
    codec = SingleObjectCodec()
    routed = routed_schemas("ax", "PRODUCT", COLUMNS)
    topic = "bench.group.g"
    messages = []
    for i, r in enumerate(rows(n)):
        key = {"ID": r["ID"]}
        value = make_value(routed, op="c", key=key, row=r, source={
            "connector": "cdx", "name": "hq", "ts_ms": 1, "snapshot": "false", "db": "hq", "schema": "dbo",
            "table": "PRODUCT", "change_version": 7, "version": "0.1.0"}, ts_ms=1, subjob="Product",
            position=SourcePosition("bench.dbo.PRODUCT", 0, i))
        messages.append((codec.encode_key(topic, routed.key, key), codec.encode_value(topic, routed.value, value)))
    spec = SinkSpec(owner_id="c1", kind="channel", channel_id="c1", group_id="g", dialect="postgresql", dsn="",
                    topic=topic, consumer_group="sink-c1")

    def cdx() -> None:
        decoder = Decoder(codec, topic)
        records = [decoder.decode(0, i, k, v) for i, (k, v) in enumerate(messages)]
        plan = plan_batch(records, SinkState(), spec)
        for tb in plan.tables.values():
            tb.upserts()

    writer = routed.value.parsed

    def floor() -> None:
        for _, v in messages:
            fastavro.schemaless_reader(io.BytesIO(unframe(v)[1]), writer, None)

    cdx_us, floor_us = per_record_us(runs, n, cdx), per_record_us(runs, n, floor)
    return Result("records", "sink: decode + plan + upsert rows, per routed record", "us", cdx_us, floor_us,
                  "fastavro read of the bodies", runs)


def main(argv: list[str] | None = None) -> list[Result]:
    ap = argparse.ArgumentParser(prog="python -m bench.records")
    ap.add_argument("--records", type=int, default=20_000)
    ap.add_argument("--runs", type=int, default=5)
    args, _ = ap.parse_known_args(argv)
    results = [capture_case(args.records, args.runs), sink_case(args.records, args.runs)]
    show(results, "per-record CPU in process (microseconds per record, lower is better)")
    console.print(f"saved {save(results, 'records')}")
    return results


if __name__ == "__main__":
    main()
