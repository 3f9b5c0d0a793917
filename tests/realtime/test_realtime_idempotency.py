"""Exactly-once mutations: Idempotency-Key replays, conflicts, concurrency; balances never overspent."""

from __future__ import annotations

import asyncio
import random
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from cdx.dialects import get_dialect
from cdx.realtime.db import SCHEMA
from tests.realtime.conftest import KEYS


def test_same_key_same_body_replays_the_first_response(api: Any) -> None:
    a = api("store-0001")
    number = a.post("/gift-cards", {"amount": "30", "currency": "USD"}).json()["number"]
    first = a.post(f"/gift-cards/{number}/redeem", {"amount": "10"}, key="pay-1")
    again = a.post(f"/gift-cards/{number}/redeem", {"amount": "10"}, key="pay-1")
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"
    assert a.get(f"/gift-cards/{number}").json()["balance"] == "20.00"
    other = a.post(f"/gift-cards/{number}/redeem", {"amount": "11"}, key="pay-1")
    assert other.status_code == 422 and other.json()["error"] == "idempotency_key_reused"
    assert api("store-0002").post(f"/gift-cards/{number}/redeem", {"amount": "10"}, key="pay-1").status_code == 200, \
        "keys are per caller"


def test_a_refused_request_is_evaluated_again(api: Any) -> None:
    a = api("store-0001")
    number = a.post("/gift-cards", {"amount": "5", "currency": "USD"}).json()["number"]
    assert a.post(f"/gift-cards/{number}/redeem", {"amount": "8"}, key="k1").status_code == 409
    a.post(f"/gift-cards/{number}/add-value", {"amount": "5"})
    assert a.post(f"/gift-cards/{number}/redeem", {"amount": "8"}, key="k1").json()["balance"] == "2.00"


def test_concurrent_requests_with_one_key_run_once(api: Any) -> None:
    a = api("store-0001")
    number = a.post("/gift-cards", {"amount": "100", "currency": "USD"}).json()["number"]
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda _: a.post(f"/gift-cards/{number}/redeem", {"amount": "7"}, key="same"),
                                range(32)))
    assert {r.status_code for r in results} == {200}
    assert {r.json()["transaction"]["entry_id"] for r in results} == {results[0].json()["transaction"]["entry_id"]}
    assert a.get(f"/gift-cards/{number}").json()["balance"] == "93.00"


def _ledger(hq_dsn: tuple[str, str], number: str) -> list[tuple[str, int]]:
    d = get_dialect(hq_dsn[0])
    conn = d.connect(hq_dsn[1])
    try:
        cur = conn.cursor()
        cur.execute(f"SELECT {d.quote_ident('OPERATION')}, {d.quote_ident('AMOUNT')} FROM"
                    f" {d.qualified(SCHEMA, 'BALANCETRANS')} WHERE {d.quote_ident('NUMBER')} = {d.placeholder}",
                    (number,))
        return [(str(op), int(amount)) for op, amount in cur.fetchall()]
    finally:
        conn.close()


async def _storm(client: TestClient, number: str, attempts: int) -> list[tuple[str, int, str]]:
    """``attempts`` redemptions of 1.00..3.00, each sent once or (1 in 3) twice at once with its key,
    plus a lost answer retried later with the same key: (key, status, balance after or error)."""
    transport = httpx.ASGITransport(app=client.app)
    headers = {"Authorization": f"Bearer {KEYS['store-0001']}"}
    rng = random.Random(7)
    plan = [(uuid.uuid4().hex, rng.choice(("1.00", "2.00", "3.00"))) for _ in range(attempts)]
    async with httpx.AsyncClient(transport=transport, base_url="http://rt", headers=headers, timeout=60) as http:
        async def redeem(key: str, amount: str) -> tuple[str, int, str]:
            r = await http.post(f"/v1/channels/store-0001/gift-cards/{number}/redeem", json={"amount": amount},
                                headers={"Idempotency-Key": key})
            body = r.json()
            return key, r.status_code, body.get("transaction", {}).get("amount", body.get("error", ""))
        sends = [redeem(k, amt) for i, (k, amt) in enumerate(plan) for _ in range(2 if i % 3 == 0 else 1)]
        first = await asyncio.gather(*sends)
        retries = await asyncio.gather(*(redeem(k, amt) for k, amt in plan[::10]))
    return [*first, *retries]


@pytest.mark.parametrize("hq_dsn", ["postgresql", pytest.param("sqlite", marks=pytest.mark.realtime_long)],
                         indirect=True)
def test_a_thousand_concurrent_redemptions_never_overspend(client: TestClient, hq_dsn: tuple[str, str]) -> None:
    auth = {"Authorization": f"Bearer {KEYS['store-0001']}"}
    r = client.post("/v1/channels/store-0001/gift-cards", json={"amount": "1000.00", "currency": "USD"},
                    headers={**auth, "Idempotency-Key": "issue"})
    number = r.json()["number"]
    results = asyncio.run(_storm(client, number, 1000))
    assert {status for _, status, _ in results} <= {200, 409}
    succeeded: dict[str, Decimal] = {}
    for key, status, amount in results:
        if status == 200:
            assert succeeded.setdefault(key, Decimal(amount)) == Decimal(amount)
    balance = Decimal(client.get(f"/v1/channels/store-0001/gift-cards/{number}", headers=auth).json()["balance"])
    assert balance >= 0
    assert sum(succeeded.values()) == Decimal("1000.00") - balance
    ledger = _ledger(hq_dsn, number)
    redemptions = [amount for op, amount in ledger if op == "redeem"]
    assert len(redemptions) == len(succeeded), "each successful key redeemed exactly once"
    assert sum(redemptions) == int((Decimal("1000.00") - balance) * 100)
    assert balance < 3, "the card was drained as far as the requests allowed"
