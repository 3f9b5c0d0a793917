"""Real-time Service latency and throughput at fixed request rates, beside the same SQL run directly.

    python -m bench.realtime [--rates 100,300,1000] [--seconds 5] [--runs 3] [--cards 200]

A PostgreSQL HQ (seeded, with the service tables) and a real ``cdx realtime serve`` process
(uvicorn, 8 HQ connections). An open-loop asyncio client (64 keep-alive connections) sends requests at a fixed rate
(each at its scheduled time, whether or not earlier ones have answered, so a slow service cannot
slow the load down) for ``--seconds``:

- **balance**: ``GET /gift-cards/{n}`` of a random card;
- **redeem**: ``POST /gift-cards/{n}/redeem`` of 0.01 from a random card, a fresh Idempotency-Key each.

Latency is from the scheduled send time to the answer: p50/p95/p99. Throughput is answers per
second of wall time. **Baseline** (same run, same rates, same open-loop schedule): the same SQL
transaction run directly with psycopg on 8 connections in threads (redeem: insert the key row,
conditional update, read balance, ledger insert, store the response; balance: one SELECT).
Figures are medians over ``--runs``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.common import Result, console, percentiles, save, show

REPO = Path(__file__).resolve().parents[1]
KEY = "bench-key-" + "x" * 24
CONNECTIONS = 8
CLIENT_CONNECTIONS = 64


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prepare(server: str) -> tuple[str, list[str]]:
    """A fresh seeded HQ with the service tables and ``cards`` gift cards; (dsn, card numbers)."""
    from cdx.demo.seed import seed_hq
    from cdx.dialects import get_dialect
    from cdx.realtime.schema import create_tables
    from cdx.topology import load_topology
    from infra.postgres import launcher as pg

    dsn = pg.create_database(server, f"bench_rt_{uuid.uuid4().hex[:8]}")
    d = get_dialect("postgresql")
    conn = d.connect(dsn)
    seed_hq(conn, d, load_topology(REPO / "topology.yaml", environ={}), scale=0.01)
    create_tables(conn, d)
    conn.close()
    return dsn, []


def issue_cards(url: str, n: int) -> list[str]:
    import httpx

    out = []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=30) as http:
        for i in range(n):
            r = http.post("/v1/channels/store-0001/gift-cards", json={"amount": "1000000", "currency": "USD"},
                          headers={"Idempotency-Key": f"issue-{i}"})
            r.raise_for_status()
            out.append(r.json()["number"])
    return out


def start_service(tmp: Path, dsn: str) -> tuple[subprocess.Popen[bytes], str]:
    import httpx

    text = (REPO / "topology.yaml").read_text()
    start, end = text.index("hq:\n"), text.index("\n\n", text.index("hq:\n"))
    topology = tmp / "topology.yaml"
    topology.write_text(text[:start] + f"hq:\n  name: hq\n  dialect: postgresql\n  dsn: \"{dsn}\"" + text[end:])
    config = tmp / "realtime.yaml"
    config.write_text("credentials:\n  - {principal: store-0001, api_key: '${CDX_BENCH_RT_KEY}'}\n")
    port = _free_port()
    log = (tmp / "serve.log").open("ab")
    proc = subprocess.Popen([sys.executable, "-m", "cdx.cli.main", "realtime", "serve", "-t", str(topology), "-c",
                             str(config), "--port", str(port), "--pool-size", str(CONNECTIONS)],
                            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "CDX_BENCH_RT_KEY": KEY})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit(f"cdx realtime serve did not become healthy; see {tmp / 'serve.log'}")


async def open_loop(rate: float, seconds: float, send: Callable[[int], Awaitable[bool]]) -> dict[str, float]:
    """Call ``send(i)`` at ``start + i/rate``; latency from the scheduled time. Figures in ms and req/s."""
    n = int(rate * seconds)
    latencies: list[float] = []
    errors = 0
    start = time.perf_counter() + 0.2

    async def one(i: int) -> None:
        nonlocal errors
        scheduled = start + i / rate
        await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
        ok = await send(i)
        latencies.append((time.perf_counter() - scheduled) * 1000)
        errors += 0 if ok else 1

    await asyncio.gather(*(one(i) for i in range(n)))
    wall = time.perf_counter() - start
    return {**percentiles(latencies), "throughput": n / wall, "errors": errors}


class RawHttp:
    """A minimal HTTP/1.1 keep-alive client on ``CLIENT_CONNECTIONS`` asyncio connections.

    httpx's async pool does work proportional to the requests waiting for a connection, so at a
    thousand requests in flight it, not the service, would set the pace; this client parses only
    the status line and ``Content-Length``, which is all uvicorn sends."""

    def __init__(self, url: str) -> None:
        host, _, port = url.removeprefix("http://").partition(":")
        self.host, self.port = host, int(port)
        self.queue: asyncio.Queue[tuple[bytes, asyncio.Future[int]]] = asyncio.Queue()
        self.workers = [asyncio.ensure_future(self._worker()) for _ in range(CLIENT_CONNECTIONS)]

    async def request(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> int:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}", f"Authorization: Bearer {KEY}",
                 f"Content-Length: {len(body)}", "Content-Type: application/json",
                 *(f"{k}: {v}" for k, v in (headers or {}).items())]
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        await self.queue.put(("\r\n".join(lines).encode() + b"\r\n\r\n" + body, done))
        return await done

    async def _worker(self) -> None:
        reader = writer = None
        while True:
            raw, done = await self.queue.get()
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(self.host, self.port)
                assert reader is not None
                writer.write(raw)
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                await reader.readexactly(length)
                done.set_result(int(head.split(b" ", 2)[1]))
            except (OSError, asyncio.IncompleteReadError) as exc:
                writer = None
                done.set_exception(exc)

    def close(self) -> None:
        for worker in self.workers:
            worker.cancel()


def http_case(url: str, cards: list[str], op: str, rate: float, seconds: float) -> dict[str, float]:
    async def run() -> dict[str, float]:
        http = RawHttp(url)

        async def send(i: int) -> bool:
            card = cards[i % len(cards)]
            try:
                if op == "balance":
                    status = await http.request("GET", f"/v1/channels/store-0001/gift-cards/{card}")
                else:
                    status = await http.request("POST", f"/v1/channels/store-0001/gift-cards/{card}/redeem",
                                                b'{"amount": "0.01"}', {"Idempotency-Key": uuid.uuid4().hex})
            except (OSError, asyncio.IncompleteReadError):
                return False
            return status == 200
        try:
            return await open_loop(rate, seconds, send)
        finally:
            http.close()
    return asyncio.run(run())


class Direct:
    """The service's SQL, run with psycopg on ``CONNECTIONS`` connections (one per worker thread)."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.local = threading.local()
        self.pool = ThreadPoolExecutor(CONNECTIONS)

    def conn(self) -> Any:
        if not hasattr(self.local, "conn"):
            import psycopg

            self.local.conn = psycopg.connect(self.dsn)
        return self.local.conn

    def balance(self, card: str) -> bool:
        conn = self.conn()
        row = conn.execute('SELECT "NUMBER", "DATAAREAID", "CURRENCY", "BALANCE", "STATUS", "CUSTACCOUNT",'
                           ' "ISSUEDBY", "CREATEDAT" FROM "rts"."GIFTCARD" WHERE "NUMBER" = %s AND "DATAAREAID" = %s',
                           (card, "usrt")).fetchone()
        conn.rollback()
        return row is not None

    def redeem(self, card: str) -> bool:
        conn, key, now = self.conn(), uuid.uuid4().hex, time.strftime("%Y-%m-%dT%H:%M:%SZ")
        with conn.transaction():
            conn.execute('INSERT INTO "rts"."IDEMPOTENCY" ("PRINCIPAL", "IDEMKEY", "REQUESTHASH", "STATUSCODE",'
                         ' "RESPONSE", "CREATEDAT") VALUES (%s, %s, %s, 0, \'\', %s) ON CONFLICT DO NOTHING',
                         ("direct", key, "h", now))
            cur = conn.execute('UPDATE "rts"."GIFTCARD" SET "BALANCE" = "BALANCE" - 1, "MODIFIEDAT" = %s WHERE'
                               ' "NUMBER" = %s AND "DATAAREAID" = %s AND "STATUS" = %s AND "BALANCE" >= 1',
                               (now, card, "usrt", "active"))
            row = conn.execute('SELECT "BALANCE" FROM "rts"."GIFTCARD" WHERE "NUMBER" = %s', (card,)).fetchone()
            conn.execute('INSERT INTO "rts"."BALANCETRANS" VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)',
                         (uuid.uuid4().hex, "giftcard", card, "usrt", "redeem", 1, row[0], "direct", "store-0001",
                          key, now))
            conn.execute('UPDATE "rts"."IDEMPOTENCY" SET "STATUSCODE" = 200, "RESPONSE" = %s WHERE "PRINCIPAL" = %s'
                         ' AND "IDEMKEY" = %s', (json.dumps({"balance": row[0]}), "direct", key))
        return cur.rowcount == 1

    def case(self, cards: list[str], op: str, rate: float, seconds: float) -> dict[str, float]:
        fn = self.balance if op == "balance" else self.redeem

        async def run() -> dict[str, float]:
            loop = asyncio.get_running_loop()

            async def send(i: int) -> bool:
                return await loop.run_in_executor(self.pool, fn, cards[i % len(cards)])
            return await open_loop(rate, seconds, send)
        return asyncio.run(run())


def _median(runs: list[dict[str, float]]) -> dict[str, float]:
    import statistics

    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def main(argv: list[str] | None = None) -> list[Result]:
    from infra.postgres import launcher as pg

    parser = argparse.ArgumentParser(prog="python -m bench.realtime")
    parser.add_argument("--rates", default="100,300,1000")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cards", type=int, default=200)
    args, _others = parser.parse_known_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="cdx-bench-realtime-"))
    dsn, _ = prepare(pg.up())
    proc, url = start_service(tmp, dsn)
    results: list[Result] = []
    try:
        cards = issue_cards(url, args.cards)
        direct = Direct(dsn)
        for op in ("balance", "redeem"):
            for rate in (float(r) for r in args.rates.split(",")):
                service = _median([http_case(url, cards, op, rate, args.seconds) for _ in range(args.runs)])
                base = _median([direct.case(cards, op, rate, args.seconds) for _ in range(args.runs)])
                for fig in ("p50", "p95", "p99"):
                    results.append(Result("realtime", f"{op} @ {rate:,.0f}/s {fig}", "ms", service[fig], base[fig],
                                          "direct SQL", args.runs, {"service": service, "direct": base}))
                console.print(f"{op} @ {rate:,.0f}/s: service {service['throughput']:,.0f}/s p50 {service['p50']:.1f}"
                              f" p95 {service['p95']:.1f} p99 {service['p99']:.1f} ms ({service['errors']:.0f} errors);"
                              f" direct {base['throughput']:,.0f}/s p50 {base['p50']:.1f} p95 {base['p95']:.1f}"
                              f" p99 {base['p99']:.1f} ms")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    show(results, "Real-time Service: latency at fixed request rates (value) beside direct SQL (baseline)")
    for r in results:
        r.value, r.baseline = round(r.value, 2), round(r.baseline or 0, 2)
    save(results, "realtime")
    return results


if __name__ == "__main__":
    main()
