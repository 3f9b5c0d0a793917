"""Upload throughput and latency: sales from SQLite channels to a PostgreSQL HQ, beside plain INSERTs.

    python -m bench.upload [--channels 20] [--backlog 500] [--rate 4] [--live-seconds 10] [--runs 3]

1. **Backlog**: every channel database holds ``--backlog`` sales transactions (header, 1-5 lines,
   an extension row for ~40%) written by the POS simulator; then ``cdx channel upload`` (all
   channels, one process) and ``cdx hq upload-sink`` start as real processes and the time until
   HQ holds every row is measured: rows/s and transactions/s (whole drain, process start
   included; and the steady rate between 10% and 90% of the rows).
2. **Live**: every channel sells ``--rate`` transactions/s for ``--live-seconds`` while the
   pipeline runs; latency per transaction = the HQ commit of the upload session that carried its
   header (``finished_at``) minus the header's ``CREATEDDATETIME`` in the channel (both UTC):
   p50/p95/p99/max.
3. **Baseline** (same run, same rows): the HQ rows read back from the channels and written into a
   fresh copy of the HQ tables with plain ``INSERT`` (psycopg ``executemany``), 5,000 rows per
   transaction, and one POS transaction per HQ transaction.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import Result, console, percentiles, save, show
from cdx.demo.pos import write_sales
from cdx.demo.retail_schema import create_channel_upload_tables, create_hq_tables
from cdx.dialects import connect, get_dialect
from cdx.topology import load_topology

HEADER = ["DATAAREAID", "TRANSACTIONID", "STORE", "TERMINAL", "CHANNEL", "TYPE", "CUSTACCOUNT", "STAFF", "CURRENCY",
          "GROSSAMOUNT", "NETAMOUNT", "TRANSDATE", "TRANSTIME", "REPLICATIONCOUNTERFROMORIGIN"]
LINES = ["DATAAREAID", "TRANSACTIONID", "LINENUM", "STORE", "TERMINAL", "CHANNEL", "ITEMID", "QTY", "PRICE",
         "NETAMOUNT", "TAXAMOUNT", "DISCAMOUNT", "TRANSDATE", "REPLICATIONCOUNTERFROMORIGIN"]
EXT = ["CONTOSORETAILSEATNUMBER", "CONTOSORETAILSERVERSTAFFID"]
RECID = 5637144576


def topology_text(bootstrap: str, hq_dsn: str, tmp: Path, channels: list[str], prefix: str) -> str:
    lines = [f"""kafka: {{bootstrap_servers: "{bootstrap}", topic_prefix: {prefix}, default_partitions: 1}}
hq: {{name: hq, dialect: postgresql, dsn: "{hq_dsn}"}}
jobs: [{{id: P-0001, direction: upload}}]
subjobs:
  - id: RetailTransactionTable
    direction: upload
    hq_table: dbo.RETAILTRANSACTIONTABLE
    fields: [{", ".join(c for c in HEADER if c != "DATAAREAID")}]
    replication_counter: REPLICATIONCOUNTERFROMORIGIN
    scheduled_by: [P-0001]
    extension:
      table: ext.CONTOSORETAILTRANSACTIONTABLE
      key: [CHANNEL, STORE, TERMINAL, TRANSACTIONID]
      fields: [{", ".join(EXT)}]
  - id: RetailTransactionSalesTrans
    direction: upload
    hq_table: dbo.RETAILTRANSACTIONSALESTRANS
    fields: [{", ".join(c for c in LINES if c != "DATAAREAID")}]
    replication_counter: REPLICATIONCOUNTERFROMORIGIN
    scheduled_by: [P-0001]
channel_data_groups:
  - id: stores
    legal_entities: [usrt]
    channels:"""]
    for i, c in enumerate(channels):
        lines.append(f"""      - {{id: {c}, database: {{dialect: sqlite, dsn: "sqlite:///{tmp}/{c}.db"}},"""
                     f""" attributes: {{recid: {RECID + i}}}}}""")
    lines.append("distribution_schedules: [{id: P-0001, direction: upload, jobs: [P-0001], "
                 "channel_data_groups: [stores]}]\n")
    return "\n".join(lines)


def pg_url(dsn: str) -> str:
    """A libpq key=value DSN as the ``postgresql://`` URL a topology takes."""
    import psycopg

    info = psycopg.conninfo.conninfo_to_dict(dsn)
    return f"postgresql://{info.get('user', 'postgres')}@{info.get('host', '127.0.0.1')}:{info.get('port', 5432)}" \
           f"/{info['dbname']}"


def hq_count(dsn: str) -> int:
    with connect("postgresql", dsn) as conn:
        return int(conn.execute('SELECT (SELECT COUNT(*) FROM dbo."RETAILTRANSACTIONTABLE")'
                                ' + (SELECT COUNT(*) FROM dbo."RETAILTRANSACTIONSALESTRANS")').fetchone()[0])


def sell(tmp: Path, channels: list[str], n: int, seed: int) -> int:
    """``n`` transactions in every channel (a thread each); returns header + line rows written."""
    d = get_dialect("sqlite")
    rows = [0] * len(channels)

    def one(i: int, c: str) -> None:
        conn = d.connect(str(tmp / f"{c}.db"))
        s = write_sales(conn, d, RECID + i, c, f"{c}-pos-01", n, random.Random(seed + i))
        rows[i] = len(s.transaction_ids) + s.lines
        conn.close()

    threads = [threading.Thread(target=one, args=(i, c)) for i, c in enumerate(channels)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(rows)


def live_sales(tmp: Path, channels: list[str], rate: float, seconds: float, seed: int) -> int:
    """Every channel sells ``rate`` transactions/s for ``seconds``; returns rows written."""
    d = get_dialect("sqlite")
    rows = [0] * len(channels)
    end = time.monotonic() + seconds

    def one(i: int, c: str) -> None:
        conn = d.connect(str(tmp / f"{c}.db"))
        rng = random.Random(seed + i)
        nxt = time.monotonic() + rng.uniform(0, 1 / rate)
        while nxt < end:
            time.sleep(max(0.0, nxt - time.monotonic()))
            s = write_sales(conn, d, RECID + i, c, f"{c}-pos-01", 1, rng)
            rows[i] += 1 + s.lines
            nxt += rng.expovariate(rate)
        conn.close()

    threads = [threading.Thread(target=one, args=(i, c)) for i, c in enumerate(channels)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(rows)


def latencies(tmp: Path, hq_dsn: str, channels: list[str], since: dt.datetime) -> list[float]:
    """Per header written after ``since``: HQ session commit minus channel CREATEDDATETIME (ms)."""
    d = get_dialect("sqlite")
    with connect("postgresql", hq_dsn) as hq:
        sessions = hq.execute('SELECT channel, first_counter, last_counter, finished_at FROM cdx.upload_sessions'
                              ' WHERE subjob = %s AND status = %s', ("RetailTransactionTable", "Applied")).fetchall()
    by_channel: dict[str, list[tuple[int, int, dt.datetime]]] = {}
    for ch, lo, hi, fin in sessions:
        by_channel.setdefault(ch, []).append((lo, hi, fin))
    out = []
    for c in channels:
        conn = d.connect(str(tmp / f"{c}.db"))
        rows = conn.execute('SELECT "REPLICATIONCOUNTERFROMORIGIN", "CREATEDDATETIME" FROM "ax_RETAILTRANSACTIONTABLE"'
                            ' WHERE "CREATEDDATETIME" >= ?', (since.isoformat(sep=" "),)).fetchall()
        conn.close()
        spans = sorted(by_channel.get(c, []))
        for counter, created in rows:
            t = dt.datetime.fromisoformat(created)
            fin = next((f for lo, hi, f in spans if lo <= counter <= hi), None)
            if fin is not None:
                out.append((fin - t).total_seconds() * 1000)
    return out


def channel_rows(tmp: Path, channels: list[str]) -> tuple[list[list[Any]], list[list[Any]], dict[str, int]]:
    """Every HQ row (headers with extension columns + origin, lines + origin) as the sink writes them."""
    d = get_dialect("sqlite")
    headers, lines = [], []
    per_txn: dict[str, int] = {}
    for c in channels:
        conn = d.connect(str(tmp / f"{c}.db"))
        hcols = {x.name: x for x in d.introspect_columns(conn, "ax", "RETAILTRANSACTIONTABLE")}
        lcols = {x.name: x for x in d.introspect_columns(conn, "ax", "RETAILTRANSACTIONSALESTRANS")}
        ecols = {x.name: x for x in d.introspect_columns(conn, "ext", "CONTOSORETAILTRANSACTIONTABLE")}
        sel = ", ".join(f'h."{x}"' for x in HEADER) + ", " + ", ".join(f'e."{x}"' for x in EXT)
        for r in conn.execute(f'SELECT {sel} FROM "ax_RETAILTRANSACTIONTABLE" h LEFT JOIN'
                              ' "ext_CONTOSORETAILTRANSACTIONTABLE" e ON h."TRANSACTIONID" = e."TRANSACTIONID"'
                              ' AND h."TERMINAL" = e."TERMINAL"'):
            infos = [hcols[x] for x in HEADER] + [ecols[x] for x in EXT]
            headers.append([d.decode(i, v) if v is not None else None for i, v in zip(infos, r, strict=True)] + [c])
        for r in conn.execute(f'SELECT {", ".join(chr(34) + x + chr(34) for x in LINES)}'
                              ' FROM "ax_RETAILTRANSACTIONSALESTRANS"'):
            lines.append([d.decode(lcols[x], v) if v is not None else None for x, v in zip(LINES, r, strict=True)]
                         + [c])
            per_txn[r[1]] = per_txn.get(r[1], 0) + 1
        conn.close()
    return headers, lines, per_txn


def baseline(admin: str, topo: Any, tmp: Path, channels: list[str]) -> tuple[float, float, int]:
    """Plain INSERT of the same rows into fresh HQ tables: (rows/s batched, rows/s per POS transaction, rows)."""
    from cdx.infra.postgres import launcher as pg

    headers, lines, _ = channel_rows(tmp, channels)
    hcols = [*HEADER, *EXT, "CDXORIGINID"]
    lcols = [*LINES, "CDXORIGINID"]

    def fresh() -> str:
        dsn = pg.create_database(admin, f"bench_upload_base_{uuid.uuid4().hex[:6]}")
        conn = connect("postgresql", dsn)
        create_hq_tables(conn, get_dialect("postgresql"), topo)
        conn.close()
        return dsn

    def ins(table: str, cols: list[str]) -> str:
        return (f'INSERT INTO dbo."{table}" ({", ".join(chr(34) + c + chr(34) for c in cols)})'
                f' VALUES ({", ".join(["%s"] * len(cols))})')

    rows = len(headers) + len(lines)
    dsn = fresh()
    with connect("postgresql", dsn) as conn:
        t0 = time.perf_counter()
        for table, cols, data in (("RETAILTRANSACTIONTABLE", hcols, headers),
                                  ("RETAILTRANSACTIONSALESTRANS", lcols, lines)):
            for k in range(0, len(data), 5000):
                with conn.cursor() as cur:
                    cur.executemany(ins(table, cols), data[k:k + 5000])
                conn.commit()
        batched = rows / (time.perf_counter() - t0)
    dsn = fresh()
    by_txn: dict[str, list[list[Any]]] = {}
    for r in lines:
        by_txn.setdefault(r[1], []).append(r)
    with connect("postgresql", dsn) as conn:
        t0 = time.perf_counter()
        for h in headers:
            with conn.cursor() as cur:
                cur.execute(ins("RETAILTRANSACTIONTABLE", hcols), h)
                cur.executemany(ins("RETAILTRANSACTIONSALESTRANS", lcols), by_txn.get(h[1], []))
            conn.commit()
        per_txn = rows / (time.perf_counter() - t0)
    return batched, per_txn, rows


def load_topology_text(text: str, tmp: Path) -> Any:
    path = tmp / f"topology-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(text)
    return load_topology(path, environ={})


def start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "cdx.cli.main", *args], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def wait_rows(hq_dsn: str, want: int, procs: list[subprocess.Popen[bytes]], timeout: float = 900
              ) -> list[tuple[float, int]]:
    """Poll HQ until it holds ``want`` rows; returns (seconds, rows) samples."""
    t0 = time.perf_counter()
    samples = []
    while True:
        n = hq_count(hq_dsn)
        samples.append((time.perf_counter() - t0, n))
        if n >= want:
            return samples
        if any(p.poll() is not None for p in procs):
            raise SystemExit("an upload process exited; see its log")
        if time.perf_counter() - t0 > timeout:
            raise SystemExit(f"HQ holds {n} of {want} rows after {timeout:.0f}s")
        time.sleep(0.1)


def main(argv: list[str] | None = None) -> list[Result]:
    from cdx.infra.kafka import launcher
    from cdx.infra.postgres import launcher as pg

    parser = argparse.ArgumentParser(prog="python -m bench.upload")
    parser.add_argument("--channels", type=int, default=20)
    parser.add_argument("--backlog", type=int, default=500, help="transactions per channel before the upload starts")
    parser.add_argument("--rate", type=float, default=4.0, help="live transactions/s per channel")
    parser.add_argument("--live-seconds", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=3)
    args, _others = parser.parse_known_args(argv)  # ``python -m bench`` passes every benchmark the same options
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks: stop the processes
    bootstrap = launcher.up(1)
    admin = pg.up()
    runs = [run_once(args, bootstrap, admin) for _ in range(args.runs)]

    def med(key: str) -> float:
        return statistics.median(r[key] for r in runs)

    rows_per_txn = runs[0]["rows"] / runs[0]["transactions"]
    results = [
        Result("upload", f"{args.channels} SQLite channels -> PostgreSQL HQ, backlog drain (steady 10-90%)", "rows/s",
               med("steady"), med("base_batched"), "plain INSERT, 5,000 rows/txn", args.runs,
               extra={"runs": runs}),
        Result("upload", "same, whole drain incl. process start", "rows/s", med("whole"), med("base_txn"),
               "plain INSERT, 1 POS txn/HQ txn", args.runs),
        Result("upload", "same, in POS transactions (steady)", "txn/s", med("steady") / rows_per_txn,
               med("base_batched") / rows_per_txn, "plain INSERT, 5,000 rows/txn", args.runs),
    ]
    results += [Result("upload", f"live latency {q} ({args.rate:g} txn/s x {args.channels} channels)", "ms",
                       med(q), runs=args.runs) for q in ("p50", "p95", "p99")]
    show(results, "upload: channel sales to HQ (medians)")
    save(results, "upload")
    return results


def run_once(args: argparse.Namespace, bootstrap: str, admin: str) -> dict[str, Any]:
    """One run on a fresh HQ database, fresh channels and a fresh topic prefix."""
    from cdx.infra.postgres import launcher as pg

    tmp = Path(tempfile.mkdtemp(prefix="cdx-bench-upload-"))
    channels = [f"store-{i:04d}" for i in range(1, args.channels + 1)]
    hq_dsn = pg.create_database(admin, "bench_upload")
    text = topology_text(bootstrap, "__HQ__", tmp, channels, f"bench{uuid.uuid4().hex[:8]}")
    topo = load_topology_text(text.replace("__HQ__", pg_url(hq_dsn)), tmp)
    path = tmp / "topology.yaml"
    path.write_text(text.replace("__HQ__", pg_url(hq_dsn)))
    with connect("postgresql", hq_dsn) as conn:
        create_hq_tables(conn, get_dialect("postgresql"), topo)
    sqlite = get_dialect("sqlite")
    for c in channels:
        conn = sqlite.connect(str(tmp / f"{c}.db"))
        create_channel_upload_tables(conn, sqlite, topo)
        conn.close()

    console.print(f"writing {args.backlog} transactions in each of {args.channels} SQLite channels ...")
    backlog_rows = sell(tmp, channels, args.backlog, seed=1)
    backlog_txns = args.backlog * args.channels
    procs = [start(["channel", "upload", "--topology", str(path), "--poll-interval", "0.05"], tmp / "upload.log"),
             start(["hq", "upload-sink", "--topology", str(path), "--instance-id", "bench"], tmp / "sink.log")]
    try:
        samples = wait_rows(hq_dsn, backlog_rows, procs)
        drain = samples[-1][0]
        t10 = next(t for t, n in samples if n >= 0.1 * backlog_rows)
        t90 = next(t for t, n in samples if n >= 0.9 * backlog_rows)
        steady = 0.8 * backlog_rows / max(t90 - t10, 1e-3)
        console.print(f"backlog: {backlog_rows:,} rows ({backlog_txns:,} transactions) at HQ in {drain:.1f}s")

        since = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        console.print(f"live: {args.rate:g} transactions/s in each channel for {args.live_seconds:g}s ...")
        live_rows = live_sales(tmp, channels, args.rate, args.live_seconds, seed=2)
        wait_rows(hq_dsn, backlog_rows + live_rows, procs, timeout=300)
        lat = latencies(tmp, hq_dsn, channels, since)
    finally:
        for p in procs:
            stop(p)
    base_batched, base_txn, rows = baseline(admin, topo, tmp, channels)
    pct = percentiles(lat)
    console.print(f"run: steady {steady:,.0f} rows/s, whole {backlog_rows / drain:,.0f} rows/s (baseline"
                  f" {base_batched:,.0f}); live latency over {len(lat):,} transactions: "
                  + ", ".join(f"{k} {v:,.0f} ms" for k, v in pct.items())
                  + f", max {max(lat) if lat else 0:,.0f} ms; logs in {tmp}")
    return {"steady": steady, "whole": backlog_rows / drain, "drain_s": drain, "rows": backlog_rows,
            "transactions": backlog_txns, "base_batched": base_batched, "base_txn": base_txn,
            "baseline_rows": rows, "max": max(lat) if lat else 0.0, "samples": len(lat), **pct}


if __name__ == "__main__":
    main()
