"""Several worker processes (`cdx realtime serve --workers 3`) keep every guarantee of one: concurrent
requests with one Idempotency-Key run once, concurrent redemptions (with same-key duplicates and
retries) never overspend, and stopping or killing the service stops every worker."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from cdx.dialects import get_dialect
from cdx.realtime.db import SCHEMA
from cdx.topology import Topology
from tests.realtime.conftest import KEYS, make_hq
from tests.realtime.process import Service, write_config

WORKERS, POOL = 3, 3
AUTH = {"Authorization": f"Bearer {KEYS['store-0001']}"}
CARDS = "/v1/channels/store-0001/gift-cards"


@pytest.fixture
def service(tmp_path: Path, postgres_server: str, sample: Topology) -> Iterator[tuple[Service, str]]:
    from cdx.infra.postgres import launcher

    dsn = launcher.create_database(postgres_server, f"t_rt_workers_{uuid.uuid4().hex[:8]}")
    make_hq("postgresql", dsn, sample)
    svc = Service(*write_config(tmp_path, "postgresql", dsn), tmp_path / "serve.log",
                  extra=["--workers", str(WORKERS), "--pool-size", str(POOL)])
    svc.start()
    yield svc, dsn
    svc.stop()


def _query(dsn: str, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    conn = get_dialect("postgresql").connect(dsn)
    try:
        cur = conn.cursor()
        cur.execute(sql, params)
        return list(cur.fetchall())
    finally:
        conn.close()


async def _storm(url: str, number: str, same_key_number: str, attempts: int) -> tuple[list[tuple[str, int, str]],
                                                                                      list[httpx.Response]]:
    """Redemptions of 1.00..3.00 (1 in 3 sent twice at once with its key, 1 in 10 retried later) on
    many connections, and 24 concurrent redemptions of another card with one key."""
    rng = random.Random(11)
    plan = [(uuid.uuid4().hex, rng.choice(("1.00", "2.00", "3.00"))) for _ in range(attempts)]
    limits = httpx.Limits(max_connections=64)  # opened at once: the kernel spreads them over the workers
    async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=60, limits=limits) as http:
        async def redeem(card: str, key: str, amount: str) -> httpx.Response:
            return await http.post(f"{CARDS}/{card}/redeem", json={"amount": amount}, headers={"Idempotency-Key": key})

        async def one(key: str, amount: str) -> tuple[str, int, str]:
            r = await redeem(number, key, amount)
            body = r.json()
            return key, r.status_code, body.get("transaction", {}).get("amount", body.get("error", ""))
        same = [redeem(same_key_number, "one-key", "7.00") for _ in range(24)]
        sends = [one(k, amt) for i, (k, amt) in enumerate(plan) for _ in range(2 if i % 3 == 0 else 1)]
        gathered = await asyncio.gather(*same, *sends)
        retries = await asyncio.gather(*(one(k, amt) for k, amt in plan[::10]))
    same_results = [r for r in gathered[:len(same)] if isinstance(r, httpx.Response)]
    return [r for r in gathered[len(same):] if isinstance(r, tuple)] + retries, same_results


def _issue(http: httpx.Client, amount: str, key: str) -> str:
    r = http.post(CARDS, json={"amount": amount, "currency": "USD"}, headers={"Idempotency-Key": key})
    assert r.status_code == 201, r.text
    return str(r.json()["number"])


def test_several_workers_keep_every_guarantee(service: tuple[Service, str]) -> None:
    svc, dsn = service
    with httpx.Client(base_url=svc.url, headers=AUTH, timeout=30) as http:
        number, same_key_number = _issue(http, "200.00", "issue-a"), _issue(http, "100.00", "issue-b")
        results, same = asyncio.run(_storm(svc.url, number, same_key_number, 200))
        balance = Decimal(http.get(f"{CARDS}/{number}").json()["balance"])
        same_balance = http.get(f"{CARDS}/{same_key_number}").json()["balance"]

    assert {r.status_code for r in same} == {200}
    assert len({r.json()["transaction"]["entry_id"] for r in same}) == 1, "one key, one effect"
    assert same_balance == "93.00"

    assert {status for _, status, _ in results} <= {200, 409}
    succeeded: dict[str, Decimal] = {}
    for key, status, amount in results:
        if status == 200:
            assert succeeded.setdefault(key, Decimal(amount)) == Decimal(amount), "a replay answers the same"
    assert balance >= 0
    assert sum(succeeded.values()) == Decimal("200.00") - balance
    ledger_table = get_dialect("postgresql").qualified(SCHEMA, "BALANCETRANS")
    ledger = _query(dsn, f'SELECT "IDEMKEY", "AMOUNT" FROM {ledger_table} WHERE "NUMBER" = %s AND "OPERATION" = %s',
                    (number, "redeem"))
    assert sorted(str(k) for k, _ in ledger) == sorted(succeeded), "each successful key redeemed exactly once"
    assert balance < 3, "the card was drained as far as the requests allowed"

    connections = _query(dsn, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                              " AND pid <> pg_backend_pid()")[0][0]
    assert isinstance(connections, int) and connections > POOL, "requests were served by more than one worker"
    _kill_stops_every_worker(svc)


def _kill_stops_every_worker(svc: Service) -> None:
    """SIGKILL of the supervisor takes its workers with it: nothing answers, the port is free again."""
    svc.kill()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{svc.url}/health", timeout=2)
        except httpx.TransportError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("a worker kept serving after the service was SIGKILLed")
    svc.start()  # the port is free again for a restarted service
