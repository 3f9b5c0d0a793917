"""Failure behaviour: HQ unreachable -> 503 with Retry-After (and recovery); start-up errors are one clear line."""

from __future__ import annotations

import socket
import uuid
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from cdx.cli.main import app as cli_app
from cdx.dialects import get_dialect
from cdx.realtime.app import create_app
from cdx.realtime.db import Hq
from cdx.topology import Topology
from tests.realtime.conftest import KEYS, make_hq, make_settings
from tests.realtime.process import free_port, write_config

AUTH = {"Authorization": f"Bearer {KEYS['store-0001']}"}


def test_unreachable_hq_answers_503_with_retry_after(sample: Topology) -> None:
    hq = Hq("postgresql", f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere", size=2)
    with TestClient(create_app(make_settings(sample), hq), raise_server_exceptions=False) as client:
        r = client.get("/v1/channels/store-0001/gift-cards/1234567890", headers=AUTH)
        assert r.status_code == 503 and r.headers["Retry-After"] == "5"
        assert r.json()["error"] == "hq_unavailable" and "Traceback" not in r.text
        r = client.post("/v1/channels/store-0001/gift-cards/1234567890/redeem", json={"amount": "1"},
                        headers={**AUTH, "Idempotency-Key": "k"})
        assert r.status_code == 503
        assert client.get("/health").status_code == 503


def test_service_recovers_when_hq_connections_drop(postgres_server: str, sample: Topology) -> None:
    from cdx.infra.postgres import launcher

    dsn = launcher.create_database(postgres_server, f"t_rt_drop_{uuid.uuid4().hex[:8]}")
    make_hq("postgresql", dsn, sample)
    hq = Hq("postgresql", dsn, size=2)
    with TestClient(create_app(make_settings(sample), hq), raise_server_exceptions=False) as client:
        r = client.post("/v1/channels/store-0001/gift-cards", json={"amount": "9", "currency": "USD"},
                        headers={**AUTH, "Idempotency-Key": "issue"})
        number = r.json()["number"]
        admin = get_dialect("postgresql").connect(dsn)
        admin.autocommit = True
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database()"
                      " AND pid <> pg_backend_pid()")
        admin.close()
        statuses = [client.get(f"/v1/channels/store-0001/gift-cards/{number}", headers=AUTH).status_code
                    for _ in range(3)]
        assert statuses[0] in (200, 503) and statuses[-1] == 200, statuses
    hq.close()


def _serve(*args: str) -> Any:
    return CliRunner().invoke(cli_app, ["realtime", "serve", *args])


def test_serve_refuses_a_bad_set_up_with_one_line(tmp_path: Path, sample: Topology) -> None:
    topology, config = write_config(tmp_path, "postgresql", f"postgresql://postgres@127.0.0.1:{free_port()}/x")
    r = _serve("-t", str(topology), "-c", str(config))
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert "realtime.yaml: credentials[0].api_key: environment variable CDX_RT_KEY_STORE_0001 is not set" in r.output
    env = {f"CDX_RT_KEY_{p.upper().replace('-', '_')}": k for p, k in KEYS.items()}
    r = CliRunner().invoke(cli_app, ["realtime", "serve", "-t", str(topology), "-c", str(config)], env=env)
    assert r.exit_code == 1 and "cannot open the HQ database" in r.output, r.output

    dsn = f"sqlite:///{tmp_path / 'hq.db'}"
    topology, config = write_config(tmp_path, "sqlite", dsn)
    r = CliRunner().invoke(cli_app, ["realtime", "serve", "-t", str(topology), "-c", str(config)], env=env)
    assert r.exit_code == 1 and "cdx hq init-realtime" in r.output, r.output
    make_hq("sqlite", dsn, sample)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        r = CliRunner().invoke(cli_app, ["realtime", "serve", "-t", str(topology), "-c", str(config), "--port", port],
                               env=env)
    assert r.exit_code == 1 and f"port {port} on 127.0.0.1 is already in use" in r.output, r.output


def test_init_realtime_is_idempotent(tmp_path: Path) -> None:
    topology, _ = write_config(tmp_path, "sqlite", f"sqlite:///{tmp_path / 'hq.db'}")
    for _ in range(2):
        r = CliRunner().invoke(cli_app, ["hq", "init-realtime", "-t", str(topology)])
        assert r.exit_code == 0 and "Real-time Service tables ready" in r.output, r.output
