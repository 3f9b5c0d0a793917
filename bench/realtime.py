"""Real-time Service latency and throughput at fixed request rates, beside the same SQL run directly.

    python -m bench.realtime [--rates 100,300,1000] [--seconds 5] [--runs 3] [--cards 200]
                             [--workers N] [--pool-size 8] [--ops balance,redeem]

A PostgreSQL HQ (seeded, with the service tables) and a real ``cdx realtime serve`` process
(``--workers`` uvicorn workers, default the service's own: one per CPU; ``--pool-size`` HQ
connections each). The open-loop client of ``bench.loadgen`` (64 keep-alive connections, uvloop)
sends requests at a fixed rate for ``--seconds``, each at its scheduled time:

- **balance**: ``GET /gift-cards/{n}`` of one of ``--cards`` cards in turn;
- **redeem**: ``POST /gift-cards/{n}/redeem`` of 0.01, a fresh Idempotency-Key each.

Latency runs from the scheduled send time to the answer (p50/p95/p99); throughput is answers per
second of wall time. Beside them: the client's CPU (% of one core) and the service's CPU per
request (all workers, from /proc). **Baseline** (same run, same rates, same open-loop schedule):
the service's SQL run directly with psycopg on ``--pool-size`` connections in threads (redeem:
key row, conditional ``UPDATE ... RETURNING``, ledger row and stored response in one statement,
``COMMIT``; balance: one ``SELECT``). Each figure is the median of ``--runs`` runs; the load
average is recorded beside it (the machine may be shared). JSON lands in ``bench/results/``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from bench.common import Result, console, save, show
from bench.cpu import cpu_seconds
from bench.loadgen import RawHttp, open_loop, run

REPO = Path(__file__).resolve().parents[1]
KEY = "bench-key-" + "x" * 24
PREFIX = "/v1/channels/store-0001/gift-cards"
CLIENT_CONNECTIONS = 64


@dataclass
class Service:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prepare(server: str) -> str:
    """A fresh seeded HQ database with the service tables; its DSN."""
    from cdx.demo.seed import seed_hq
    from cdx.dialects import get_dialect
    from cdx.infra.postgres import launcher as pg
    from cdx.realtime.schema import create_tables
    from cdx.topology import load_topology

    dsn = pg.create_database(server, f"bench_rt_{uuid.uuid4().hex[:8]}")
    d = get_dialect("postgresql")
    conn = d.connect(dsn)
    seed_hq(conn, d, load_topology(REPO / "topology.yaml", environ={}), scale=0.01)
    create_tables(conn, d)
    conn.close()
    return dsn


def issue_cards(url: str, n: int) -> list[str]:
    import httpx

    out = []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=30) as http:
        for i in range(n):
            r = http.post(PREFIX, json={"amount": "1000000", "currency": "USD"}, headers={"Idempotency-Key": f"i-{i}"})
            r.raise_for_status()
            out.append(r.json()["number"])
    return out


def start_service(tmp: Path, dsn: str, workers: int | None, pool_size: int) -> Service:
    import httpx

    text = (REPO / "topology.yaml").read_text()
    start, end = text.index("hq:\n"), text.index("\n\n", text.index("hq:\n"))
    topology = tmp / "topology.yaml"
    topology.write_text(text[:start] + f"hq:\n  name: hq\n  dialect: postgresql\n  dsn: \"{dsn}\"" + text[end:])
    config = tmp / "realtime.yaml"
    config.write_text("credentials:\n  - {principal: store-0001, api_key: '${CDX_BENCH_RT_KEY}'}\n")
    port, log = _free_port(), tmp / "serve.log"
    argv = [sys.executable, "-m", "cdx.cli.main", "realtime", "serve", "-t", str(topology), "-c", str(config),
            "--port", str(port), "--pool-size", str(pool_size), *(["--workers", str(workers)] if workers else [])]
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "CDX_BENCH_RT_KEY": KEY})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                return Service(proc, url, log)
        except httpx.TransportError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit(f"cdx realtime serve did not become healthy; see {log}")


def http_case(service: Service, cards: list[str], op: str, rate: float, seconds: float) -> dict[str, float]:
    """One open-loop case against the service, plus its CPU per request (ms, all workers)."""
    async def go() -> dict[str, float]:
        http = RawHttp(service.url, {"Authorization": f"Bearer {KEY}"}, CLIENT_CONNECTIONS)

        async def send(i: int) -> bool:
            card = cards[i % len(cards)]
            if op == "balance":
                return await http.request("GET", f"{PREFIX}/{card}") == 200
            return await http.request("POST", f"{PREFIX}/{card}/redeem", b'{"amount": "0.01"}',
                                      f"Idempotency-Key: {uuid.uuid4().hex}\r\n") == 200
        try:
            return await open_loop(rate, seconds, send)
        finally:
            http.close()
    cpu_before = cpu_seconds(service.proc.pid)
    figures = run(go())
    figures["service_cpu_ms_per_req"] = 1000 * (cpu_seconds(service.proc.pid) - cpu_before) / int(rate * seconds)
    return figures


_ACCOUNT_COLUMNS = ('"NUMBER", "DATAAREAID", "CURRENCY", "BALANCE", "STATUS", "CUSTACCOUNT", "ISSUEDBY",'
                    ' "CREATEDAT"')


class Direct:
    """The service's SQL, run with psycopg on ``connections`` connections (one per worker thread)."""

    def __init__(self, dsn: str, connections: int) -> None:
        self.dsn = dsn
        self.local = threading.local()
        self.pool = ThreadPoolExecutor(connections)

    def conn(self) -> Any:
        if not hasattr(self.local, "conn"):
            import psycopg

            self.local.conn = psycopg.connect(self.dsn)
        return self.local.conn

    def balance(self, card: str) -> bool:
        conn = self.conn()
        row = conn.execute(f'SELECT {_ACCOUNT_COLUMNS} FROM "rts"."GIFTCARD" WHERE "NUMBER" = %s'
                           ' AND "DATAAREAID" = %s', (card, "usrt")).fetchone()
        conn.rollback()
        return row is not None

    def redeem(self, card: str) -> bool:
        conn, key, now = self.conn(), uuid.uuid4().hex, time.strftime("%Y-%m-%dT%H:%M:%SZ")
        try:
            conn.execute('INSERT INTO "rts"."IDEMPOTENCY" ("PRINCIPAL", "IDEMKEY", "REQUESTHASH", "STATUSCODE",'
                         ' "RESPONSE", "CREATEDAT") VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT ("PRINCIPAL",'
                         ' "IDEMKEY") DO NOTHING', ("direct", key, "h", 0, "", now))
            row = conn.execute('UPDATE "rts"."GIFTCARD" SET "BALANCE" = "BALANCE" - %s, "MODIFIEDAT" = %s WHERE'
                               ' "NUMBER" = %s AND "DATAAREAID" = %s AND "STATUS" = %s AND "BALANCE" >= %s'
                               f' RETURNING {_ACCOUNT_COLUMNS}', (1, now, card, "usrt", "active", 1)).fetchone()
            conn.execute('WITH d0 AS (INSERT INTO "rts"."BALANCETRANS" ("ENTRYID", "KIND", "NUMBER", "DATAAREAID",'
                         ' "OPERATION", "AMOUNT", "BALANCEAFTER", "PRINCIPAL", "CHANNEL", "IDEMKEY", "CREATEDAT")'
                         ' VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)) UPDATE "rts"."IDEMPOTENCY"'
                         ' SET "STATUSCODE" = %s, "RESPONSE" = %s WHERE "PRINCIPAL" = %s AND "IDEMKEY" = %s',
                         (uuid.uuid4().hex, "giftcard", card, "usrt", "redeem", 1, row[3], "direct", "store-0001",
                          key, now, 200, json.dumps({"balance": row[3]}), "direct", key))
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        return True

    def case(self, cards: list[str], op: str, rate: float, seconds: float) -> dict[str, float]:
        fn = self.balance if op == "balance" else self.redeem

        async def go() -> dict[str, float]:
            import asyncio

            loop = asyncio.get_running_loop()

            async def send(i: int) -> bool:
                return await loop.run_in_executor(self.pool, fn, cards[i % len(cards)])
            return await open_loop(rate, seconds, send)
        return run(go())


def _median(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def _measure(fn: Any, runs: int) -> dict[str, float]:
    """Median of ``runs`` calls of ``fn()``, with the 1-minute load average before and after."""
    load = [os.getloadavg()[0]]
    figures = _median([fn() for _ in range(runs)])
    load.append(os.getloadavg()[0])
    return {**figures, "load_before": load[0], "load_after": load[1]}


def _line(op: str, rate: float, s: dict[str, float], b: dict[str, float]) -> str:
    return (f"{op} @ {rate:,.0f}/s: service {s['throughput']:,.0f}/s p50 {s['p50']:.1f} p95 {s['p95']:.1f}"
            f" p99 {s['p99']:.1f} ms ({s['errors']:.0f} errors; {s['service_cpu_ms_per_req']:.2f} ms service CPU/req;"
            f" client {s['client_cpu_pct']:.0f}% CPU); direct {b['throughput']:,.0f}/s p50 {b['p50']:.1f}"
            f" p95 {b['p95']:.1f} p99 {b['p99']:.1f} ms; load {s['load_before']:.1f}-{b['load_after']:.1f}")


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.realtime")
    parser.add_argument("--rates", default="100,300,1000")
    parser.add_argument("--ops", default="balance,redeem")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cards", type=int, default=200)
    parser.add_argument("--workers", type=int, default=None, help="default: the service's (one per CPU)")
    parser.add_argument("--pool-size", type=int, default=8)
    args, _others = parser.parse_known_args(argv)
    return args


def main(argv: list[str] | None = None) -> list[Result]:
    from cdx.infra.postgres import launcher as pg

    args = _arguments(argv)
    tmp = Path(tempfile.mkdtemp(prefix="cdx-bench-realtime-"))
    dsn = prepare(pg.up())
    service = start_service(tmp, dsn, args.workers, args.pool_size)
    results: list[Result] = []
    try:
        cards = issue_cards(service.url, args.cards)
        direct = Direct(dsn, args.pool_size)
        for op in args.ops.split(","):
            for rate in (float(r) for r in args.rates.split(",")):
                figures = _measure(partial(http_case, service, cards, op, rate, args.seconds), args.runs)
                base = _measure(partial(direct.case, cards, op, rate, args.seconds), args.runs)
                extra = {"service": figures, "direct": base, "workers": args.workers or os.cpu_count(),
                         "pool_size": args.pool_size}
                for fig in ("p50", "p95", "p99"):
                    results.append(Result("realtime", f"{op} @ {rate:,.0f}/s {fig}", "ms", figures[fig], base[fig],
                                          "direct SQL", args.runs, extra))
                console.print(_line(op, rate, figures, base))
    finally:
        service.proc.send_signal(signal.SIGTERM)
        service.proc.wait(30)
    show(results, "Real-time Service: latency at fixed request rates (value) beside direct SQL (baseline)")
    for r in results:
        r.value, r.baseline = round(r.value, 2), round(r.baseline or 0, 2)
    console.print(f"saved {save(results, 'realtime')}")
    return results


if __name__ == "__main__":
    main()
