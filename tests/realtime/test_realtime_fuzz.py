"""The OpenAPI description fuzzed with schemathesis: no request, valid or not, gets a 5xx.

Every operation gets a bounded number of generated requests (``EXAMPLES``) against a seeded
SQLite HQ, authenticated as store-0001 (acting for its own channel, so requests reach the
operations, not only the 403 of a random channel)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings

from cdx.realtime.app import create_app
from cdx.realtime.db import Hq
from cdx.topology import Topology
from tests.realtime.conftest import KEYS, make_hq, make_settings

EXAMPLES = 10
pytestmark = pytest.mark.realtime_long  # ~45 s: hypothesis generates ~300 requests (make test-realtime)


@pytest.fixture(scope="module")
def realtime_schema(tmp_path_factory: pytest.TempPathFactory, sample: Topology) -> Iterator[Any]:
    dsn = f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'hq.db'}"
    make_hq("sqlite", dsn, sample)
    hq = Hq("sqlite", dsn, size=2)
    app = create_app(make_settings(sample), hq)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield schemathesis.openapi.from_asgi("/openapi.json", app), client
    hq.close()


def test_no_request_gets_a_server_error(realtime_schema: Any) -> None:
    schema, client = realtime_schema
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 25
    for operation in operations:
        fuzz = given(case=operation.as_strategy())(lambda case: _call(client, case))
        settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
                 database=None)(fuzz)()


def _call(client: TestClient, case: Any) -> None:
    """Send the generated request through one in-process client (``case.call`` starts a client per call)."""
    if case.path_parameters and "channel" in case.path_parameters:
        case.path_parameters["channel"] = "store-0001"
    query = {k: v for k, v in (case.query or {}).items() if k != "legal_entity"}
    headers = {k: str(v) for k, v in (case.headers or {}).items()} | {"Authorization": f"Bearer {KEYS['store-0001']}"}
    body = case.body if type(case.body).__name__ != "NotSet" else None
    response = client.request(case.method, case.formatted_path, params=query, headers=headers,
                              json=body if body is not None else None)
    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.status_code} {response.text}"
    if response.status_code >= 400:
        assert set(response.json()) >= {"error", "message"}, response.text
