"""Fixtures for the Real-time Service: a seeded HQ (SQLite or PostgreSQL) with the service tables,
an in-process app over it (real database, real FastAPI), and API keys for a few principals."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cdx.demo.seed import seed_hq
from cdx.dialects import get_dialect
from cdx.realtime.app import create_app
from cdx.realtime.config import CredentialSpec, RealtimeSettings, RealtimeSpec, settings_from
from cdx.realtime.db import Hq
from cdx.realtime.schema import create_tables
from cdx.topology import Topology, load_topology

REPO = Path(__file__).resolve().parents[2]
SCALE = 0.004
"""Seeded HQ size: ~20 customers per legal entity, 20 items."""
PRINCIPALS = ("store-0001", "store-0001-pos-01", "store-0002", "online-us", "store-1001")
KEYS = {p: f"key-{p}-{'x' * 16}" for p in PRINCIPALS}
"""API keys of the principals (``CDX_RT_KEY_<principal>`` in the environment the settings see)."""


def env_name(principal: str) -> str:
    return "CDX_RT_KEY_" + principal.upper().replace("-", "_")


@pytest.fixture(scope="session")
def sample() -> Topology:
    return load_topology(REPO / "topology.yaml", environ={})


def make_settings(topology: Topology, principals: tuple[str, ...] = PRINCIPALS) -> RealtimeSettings:
    spec = RealtimeSpec(credentials=tuple(CredentialSpec(principal=p, api_key="${" + env_name(p) + "}")
                                          for p in principals))
    return settings_from(spec, topology, "test", {env_name(p): KEYS[p] for p in principals})


def make_hq(dialect_name: str, dsn: str, topology: Topology) -> None:
    d = get_dialect(dialect_name)
    conn = d.connect(dsn)
    try:
        seed_hq(conn, d, topology, scale=SCALE)
        create_tables(conn, d)
    finally:
        conn.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def hq_dsn(request: pytest.FixtureRequest, tmp_path: Path, sample: Topology) -> tuple[str, str]:
    """(dialect, dsn) of a fresh seeded HQ with the service tables."""
    if request.param == "sqlite":
        dsn = f"sqlite:///{tmp_path / 'hq.db'}"
    else:
        from cdx.infra.postgres import launcher

        server = request.getfixturevalue("postgres_server")
        dsn = launcher.create_database(server, f"t_rt_{uuid.uuid4().hex[:10]}")
    make_hq(request.param, dsn, sample)
    return request.param, dsn


@pytest.fixture
def client(hq_dsn: tuple[str, str], sample: Topology) -> Iterator[TestClient]:
    hq = Hq(*hq_dsn, size=8)
    with TestClient(create_app(make_settings(sample), hq), raise_server_exceptions=False) as c:
        yield c
    hq.close()


class Api:
    """Calls as one principal: ``api.post(path, body)`` adds the key, a fresh Idempotency-Key and
    the principal's channel prefix (``/v1/channels/<channel>``)."""

    def __init__(self, client: TestClient, principal: str, channel: str) -> None:
        self.client, self.principal, self.channel = client, principal, channel

    def headers(self, key: str | None = None) -> dict[str, str]:
        out = {"Authorization": f"Bearer {KEYS[self.principal]}"}
        if key is not None:
            out["Idempotency-Key"] = key
        return out

    def url(self, path: str) -> str:
        return f"/v1/channels/{self.channel}{path}"

    def get(self, path: str, **params: Any) -> Any:
        return self.client.get(self.url(path), headers=self.headers(), params=params)

    def send(self, method: str, path: str, body: Any = None, key: str | None = None, **params: Any) -> Any:
        return self.client.request(method, self.url(path), json=body, headers=self.headers(key or uuid.uuid4().hex),
                                   params=params)

    def post(self, path: str, body: Any = None, key: str | None = None, **params: Any) -> Any:
        return self.send("POST", path, body, key, **params)


@pytest.fixture
def api(client: TestClient, sample: Topology) -> Callable[[str], Api]:
    """``api("store-0001")``: an :class:`Api` for that principal (registers act for their store)."""
    from cdx.realtime.config import principals_of

    principals = principals_of(sample)
    return lambda principal: Api(client, principal, principals[principal].channel)
