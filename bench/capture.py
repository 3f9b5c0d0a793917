"""Capture throughput: HQ changes/s published, beside a plain SELECT of the same rows.

    python -m bench.capture [--rows 50000] [--runs 3] [--dialects sqlite,postgresql]

For each dialect and row width (narrow: 5 columns; wide: 40 columns) it creates a tracked HQ
table, inserts ``--rows`` rows (so there are that many tracked changes), then times the capture
connector publishing them (net changes read, Avro-encoded, produced and committed in Kafka
transactions with positions) against the read baseline: ``SELECT *`` of the same rows with the
same driver. Medians of ``--runs``.
"""

from __future__ import annotations

import argparse
import uuid
from pathlib import Path

from bench.common import Result, median_of, save, show, timed
from cdx.connectors.capture.connector import CaptureConnector
from cdx.connectors.capture.tracking import open_tracker
from cdx.dialects import ColumnInfo, LogicalType, connect, get_dialect
from cdx.topology import parse_topology

TOPOLOGY = """
kafka: {{bootstrap_servers: "{bootstrap}", topic_prefix: {prefix}, default_partitions: 3}}
hq: {{name: hq, dialect: {dialect}, dsn: "{dsn}"}}
jobs: [{{id: "1", direction: download}}]
subjobs:
  - {{id: T, hq_table: dbo.BENCH, fields: [{fields}], scheduled_by: ["1"]}}
channel_data_groups:
  - {{id: g, legal_entities: [x], channels: [{{id: c, database: {{dialect: sqlite, dsn: "sqlite:///{tmp}/c.db"}}}}]}}
distribution_schedules: [{{id: S, direction: download, jobs: ["1"], channel_data_groups: [g]}}]
"""


def columns(width: int) -> list[ColumnInfo]:
    cols = [ColumnInfo("ID", LogicalType.INT64, nullable=False, primary_key=True, key_position=1)]
    kinds = [LogicalType.STRING, LogicalType.DECIMAL, LogicalType.INT32, LogicalType.TIMESTAMP]
    for i in range(1, width):
        kind = kinds[i % len(kinds)]
        cols.append(ColumnInfo(f"C{i}", kind, length=40 if kind is LogicalType.STRING else None,
                               precision=18 if kind is LogicalType.DECIMAL else None,
                               scale=4 if kind is LogicalType.DECIMAL else None))
    return cols


def row(i: int, cols: list[ColumnInfo]) -> tuple:
    import datetime as dt
    from decimal import Decimal

    values: list[object] = [i]
    for c in cols[1:]:
        if c.logical_type is LogicalType.STRING:
            values.append(f"value {i} {c.name}")
        elif c.logical_type is LogicalType.DECIMAL:
            values.append(Decimal(i % 1000) / 4)
        elif c.logical_type is LogicalType.INT32:
            values.append(i % 100_000)
        else:
            values.append(dt.datetime(2026, 1, 1) + dt.timedelta(seconds=i))
    return tuple(values)


def run_case(dialect: str, dsn: str, width: int, rows: int, bootstrap: str, tmp: Path) -> tuple[float, float]:
    d = get_dialect(dialect)
    cols = columns(width)
    conn = connect(dialect, dsn)
    with d.transaction(conn):
        d.ensure_schema(conn, "dbo")
        conn.execute(f"DROP TABLE IF EXISTS {d.qualified('dbo', 'BENCH')}")
    conn.close()
    tracker = open_tracker(dialect, dsn)
    tracker.disable()
    tracker.conn.close()
    conn = connect(dialect, dsn)
    with d.transaction(conn):
        d.create_table(conn, "dbo", "BENCH", cols, ["ID"])
    conn.close()
    tracker = open_tracker(dialect, dsn)
    tracker.enable(["dbo.BENCH"])
    tracker.conn.close()
    text = TOPOLOGY.format(bootstrap=bootstrap, prefix=f"bench{uuid.uuid4().hex[:8]}", dialect=dialect, dsn=dsn,
                           fields=", ".join(c.name for c in cols), tmp=tmp)
    cap = CaptureConnector(parse_topology(text), batch_size=5000)
    cap.setup()
    cap.poll_once()  # the (empty) snapshot
    conn = connect(dialect, dsn)
    with d.transaction(conn):
        d.upsert_rows(conn, "dbo", "BENCH", [c.name for c in cols], ["ID"], [row(i, cols) for i in range(rows)])
    conn.close()
    published = 0

    def capture_all() -> None:
        nonlocal published
        while published < rows:
            published += cap.poll_once()

    seconds = timed(capture_all)
    cap.close()
    conn = connect(dialect, dsn)
    select = f"SELECT * FROM {d.qualified('dbo', 'BENCH')}"
    base = timed(lambda: conn.execute(select).fetchall())
    conn.close()
    return rows / seconds, rows / base


def main(argv: list[str] | None = None) -> list[Result]:
    from cdx.infra.kafka import launcher
    from cdx.infra.postgres import launcher as pg

    parser = argparse.ArgumentParser(prog="python -m bench.capture")
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dialects", default="sqlite,postgresql")
    args, _others = parser.parse_known_args(argv)  # ``python -m bench`` passes every benchmark the same options
    bootstrap = launcher.up(1)
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="cdx-bench-capture-"))
    results = []
    for dialect in args.dialects.split(","):
        dsn = f"sqlite:///{tmp}/hq.db" if dialect == "sqlite" else pg.create_database(pg.up(), "bench_capture")
        for width in (5, 40):
            pairs = []

            def once(dialect: str = dialect, dsn: str = dsn, width: int = width, pairs: list = pairs) -> float:
                pairs.append(run_case(dialect, dsn, width, args.rows, bootstrap, tmp))
                return pairs[-1][0]

            value, _ = median_of(args.runs, once)
            baseline = sorted(p[1] for p in pairs)[len(pairs) // 2]
            results.append(Result("capture", f"{dialect} {'narrow' if width == 5 else 'wide'} ({width} cols)",
                                  "changes/s", value, baseline, "plain SELECT", args.runs, {"rows": args.rows}))
    show(results, "capture: HQ changes published per second")
    save(results, "capture")
    return results


if __name__ == "__main__":
    main()
