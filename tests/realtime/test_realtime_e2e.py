"""A customer created through the Real-time Service reaches every channel and register of the groups
that receive its legal entity through the normal download path: real capture, router, sinks and
offline sync processes on Kafka, exactly as ``cdx demo`` runs them."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from cdx.demo.environment import DemoEnv
from cdx.demo.processes import ProcessGroup
from cdx.dialects import connect, get_dialect
from cdx.realtime.app import create_app
from cdx.realtime.db import Hq
from cdx.verify import verify_channel
from tests.realtime.conftest import KEYS, REPO, SCALE, make_settings

US_DATABASES = ("store-0001", "store-0001-pos-01", "store-0002", "online-us")
DE_DATABASES = ("store-1001", "store-1001-pos-01", "store-1002", "store-1003")


def _accounts(env: DemoEnv, owner: str) -> set[str]:
    db = env.database(owner)
    d = get_dialect(db.dialect)
    conn = connect(db.dialect, db.dsn)
    try:
        if not d.table_exists(conn, "ax", "CUSTTABLE"):
            return set()
        cur = conn.cursor()
        cur.execute(f"SELECT {d.quote_ident('ACCOUNTNUM')} FROM {d.qualified('ax', 'CUSTTABLE')}")
        return {str(r[0]) for r in cur.fetchall()}
    finally:
        conn.rollback()
        conn.close()


def _wait(check: object, timeout: float, what: str, group: ProcessGroup) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert not group.failed(), f"a pipeline process exited: {[r.log.read_text()[-1500:] for r in group.failed()]}"
        if check():  # type: ignore[operator]
            return
        time.sleep(0.5)
    raise AssertionError(f"{what} within {timeout:.0f}s")


@pytest.mark.integration
def test_customer_created_at_a_register_reaches_every_channel_of_the_group(kafka: str, tmp_path: Path) -> None:
    env, _ = DemoEnv.create(REPO / "topology.yaml", tmp_path, kafka, None, SCALE, 42)
    subprocess.run([sys.executable, "-m", "cdx.cli.main", "hq", "enable-tracking"], env=env.env, check=True,
                   capture_output=True)
    group = ProcessGroup(env.run_dir / "logs", env.env)
    hq = Hq(env.topology.hq.dialect.value, env.topology.hq.dsn, size=2)
    try:
        for name, args in (("capture", ["capture"]), ("router", ["route"]), ("sink", ["sink"]),
                           ("offline-sync", ["channel", "offline-sync"])):
            group.start(name, args)
        with TestClient(create_app(make_settings(env.topology), hq)) as client:
            r = client.post("/v1/channels/store-0001/customers", json={"name": "Rita Register", "currency": "USD"},
                            headers={"Authorization": f"Bearer {KEYS['store-0001-pos-01']}",
                                     "Idempotency-Key": "new-customer-1"})
        assert r.status_code == 201, r.text
        account = r.json()["account"]
        _wait(lambda: all(account in _accounts(env, o) for o in US_DATABASES), 240,
              f"{account} did not reach {US_DATABASES}", group)
        assert not any(account in _accounts(env, o) for o in DE_DATABASES), "another legal entity's channels"
        hq_conn = env.hq()
        try:
            for owner in US_DATABASES:
                db = env.database(owner)
                conn = connect(db.dialect, db.dsn)
                report = verify_channel(hq_conn, env.hq_dialect, conn, get_dialect(db.dialect), env.topology, owner)
                conn.close()
                assert report.ok, f"{owner}: {report.summary()}"
        finally:
            hq_conn.close()
    finally:
        group.stop_all()
        hq.close()
