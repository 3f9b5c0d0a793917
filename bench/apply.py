"""Fan-out apply: aggregate rows/s applied into N channel databases by one sink process, beside
a raw COPY + upsert of the same rows into one database with psycopg (the write baseline).

    python -m bench.apply [--rows 20000] [--channels 1,4,16] [--runs 3] [--dialect postgresql]

Routed records (6-column rows, upserts) are produced to a group topic first; then a ``SinkHost``
with N channels starts and the clock runs until every channel's stored offsets reach the end of
the topic. Aggregate rate = N x rows / seconds. Baseline: ``COPY`` into a temp table + one
``INSERT ... ON CONFLICT`` of the same rows, in one transaction, same server, same run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any

from bench.common import Result, median_of, save, show
from cdx.connectors.sink.host import SinkHost
from cdx.connectors.sink.runner import SinkSettings
from tests.sink.helpers import FakeRouter, pg_db, sqlite_db, stored_offsets, write_topology


def produce(router: FakeRouter, rows: int) -> None:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    for i in range(rows):
        router.change("PARENT", "c", {"DATAAREAID": "usrt", "ID": i, "NAME": f"item {i}",
                                      "PRICE": Decimal(i % 1000) / 4, "VER": 1, "TS": now})
    router.flush()


def run_fanout(n: int, rows: int, dialect: str, bootstrap: str, tmp: Path, server: str | None) -> float:
    if dialect == "postgresql":
        assert server is not None
        dbs = [pg_db(server, f"bench_apply_{i}") for i in range(n)]
    else:
        dbs = [sqlite_db(tmp, f"a{n}_{i}_{time.time_ns()}") for i in range(n)]
    _path, topo = write_topology(tmp, bootstrap, dbs)
    router = FakeRouter(topo)
    produce(router, rows)
    ends = router.ends()
    host = SinkHost(topo, None, SinkSettings(batch_size=5000, poll_timeout=0.1))
    host.setup()
    start = time.perf_counter()
    host.start()
    try:
        while True:
            if all(all(stored_offsets(db, router.topic).get(p, 0) >= e for p, e in ends.items()) for db in dbs):
                break
            time.sleep(0.05)
        return n * rows / (time.perf_counter() - start)
    finally:
        host.stop()
        host.wait(30)


def baseline(rows: int, server: str) -> float:
    from cdx.infra.postgres.launcher import create_database

    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    data = [("usrt", i, f"item {i}", Decimal(i % 1000) / 4, 1, now) for i in range(rows)]
    return copy_upsert(create_database(server, "bench_apply_baseline"), data)


def copy_upsert(dsn: str, data: Iterable[tuple[Any, ...]]) -> float:
    """The write baseline: ``COPY`` of 6-column PARENT rows into a temp table + one ``INSERT ... ON
    CONFLICT`` into a fresh table, in one transaction, with psycopg; rows/s (table creation untimed)."""
    import psycopg

    with psycopg.connect(dsn) as conn:
        conn.execute('CREATE TABLE t ("DATAAREAID" varchar(4), "ID" bigint, "NAME" varchar(40),'
                     ' "PRICE" numeric(18,4), "VER" bigint, "TS" timestamp, PRIMARY KEY ("DATAAREAID", "ID"))')
        conn.commit()
        start = time.perf_counter()
        n = 0
        with conn.transaction():
            conn.execute("CREATE TEMP TABLE s (LIKE t) ON COMMIT DROP")
            with conn.cursor() as cur, cur.copy("COPY s FROM STDIN") as copy:
                for r in data:
                    copy.write_row(r)
                    n += 1
            conn.execute('INSERT INTO t SELECT * FROM s ON CONFLICT ("DATAAREAID", "ID") DO UPDATE SET'
                         ' "NAME" = excluded."NAME", "PRICE" = excluded."PRICE", "VER" = excluded."VER",'
                         ' "TS" = excluded."TS"')
        return n / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> list[Result]:
    from cdx.infra.kafka import launcher
    from cdx.infra.postgres import launcher as pg

    parser = argparse.ArgumentParser(prog="python -m bench.apply")
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--channels", default="1,4,16")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dialect", default="postgresql", choices=["postgresql", "sqlite"])
    args, _others = parser.parse_known_args(argv)  # ``python -m bench`` passes every benchmark the same options
    bootstrap = launcher.up(1)
    server = pg.up()
    tmp = Path(tempfile.mkdtemp(prefix="cdx-bench-apply-"))
    base, _ = median_of(args.runs, lambda: baseline(args.rows, server))
    results = []
    for n in (int(x) for x in args.channels.split(",")):
        value, _ = median_of(args.runs, lambda n=n: run_fanout(n, args.rows, args.dialect, bootstrap, tmp, server))
        results.append(Result("apply", f"{args.dialect}, {n} channel(s), {args.rows:,} rows each", "rows/s", value,
                              base, "raw COPY+upsert, 1 db", args.runs, {"channels": n, "rows": args.rows}))
    show(results, "fan-out apply: aggregate rows/s into N channel databases (one sink process)")
    save(results, "apply")
    return results


if __name__ == "__main__":
    main()
