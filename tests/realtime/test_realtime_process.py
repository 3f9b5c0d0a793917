"""The real service process: SIGKILLed mid-request while clients retry with their keys, every effect
lands exactly once; start-up errors are one clear line."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from cdx.dialects import get_dialect
from cdx.realtime.db import SCHEMA
from cdx.topology import Topology
from tests.realtime.conftest import KEYS, make_hq
from tests.realtime.process import Service, write_config

REDEMPTIONS = 200
KILLS = 3


@pytest.fixture
def service(tmp_path: Path, postgres_server: str, sample: Topology) -> Iterator[tuple[Service, str]]:
    from cdx.infra.postgres import launcher

    dsn = launcher.create_database(postgres_server, f"t_rt_kill_{uuid.uuid4().hex[:8]}")
    make_hq("postgresql", dsn, sample)
    svc = Service(*write_config(tmp_path, "postgresql", dsn), tmp_path / "serve.log")
    svc.start()
    yield svc, dsn
    svc.stop()


_clients = threading.local()
_lost_answers: list[str] = []
"""Keys whose request was sent but whose answer was lost to a kill (the mid-request case)."""


def _redeem_until_answered(url: str, number: str, key: str, stop: threading.Event) -> int:
    """Send one redemption, retrying with the same key through connection failures and 503s."""
    if not hasattr(_clients, "http"):
        _clients.http = httpx.Client(base_url=url, timeout=10)
    headers = {"Authorization": f"Bearer {KEYS['store-0001']}", "Idempotency-Key": key}
    while not stop.is_set():
        try:
            r = _clients.http.post(f"/v1/channels/store-0001/gift-cards/{number}/redeem", json={"amount": "1.00"},
                                   headers=headers)
        except httpx.ConnectError:
            time.sleep(0.1)
            continue
        except httpx.TransportError:
            _lost_answers.append(key)
            time.sleep(0.1)
            continue
        if r.status_code == 503:
            time.sleep(float(r.headers.get("Retry-After", "1")))
            continue
        return r.status_code
    return 0


def _ledger(dsn: str, number: str) -> list[str]:
    d = get_dialect("postgresql")
    conn = d.connect(dsn)
    try:
        cur = conn.cursor()
        cur.execute(f'SELECT "IDEMKEY" FROM {d.qualified(SCHEMA, "BALANCETRANS")} WHERE "NUMBER" = %s'
                    f" AND \"OPERATION\" = 'redeem'", (number,))
        return [str(k) for (k,) in cur.fetchall()]
    finally:
        conn.close()


@pytest.mark.realtime_long
def test_sigkill_mid_request_leaves_each_effect_exactly_once(service: tuple[Service, str]) -> None:
    svc, dsn = service
    auth = {"Authorization": f"Bearer {KEYS['store-0001']}"}
    r = httpx.post(f"{svc.url}/v1/channels/store-0001/gift-cards", json={"amount": "1000", "currency": "USD"},
                   headers={**auth, "Idempotency-Key": "issue"}, timeout=30)
    number = r.json()["number"]
    keys = [uuid.uuid4().hex for _ in range(REDEMPTIONS)]
    stop = threading.Event()

    def killer() -> None:
        for _ in range(KILLS):
            time.sleep(1.0)
            svc.kill()
            time.sleep(0.3)
            svc.start()

    kill_thread = threading.Thread(target=killer)
    kill_thread.start()
    try:
        with ThreadPoolExecutor(16) as pool:
            statuses = list(pool.map(lambda k: _redeem_until_answered(svc.url, number, k, stop), keys))
        kill_thread.join(300)
    finally:
        stop.set()
    assert statuses == [200] * REDEMPTIONS
    assert _lost_answers, "some requests were in flight when the service was killed"
    ledger = _ledger(dsn, number)
    assert sorted(ledger) == sorted(keys), "each redemption exactly once"
    balance = httpx.get(f"{svc.url}/v1/channels/store-0001/gift-cards/{number}", headers=auth, timeout=30)
    assert balance.json()["balance"] == f"{1000 - REDEMPTIONS}.00"
