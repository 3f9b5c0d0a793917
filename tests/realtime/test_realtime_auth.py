"""Identity and authorization: each caller acts only as itself, within its legal entities; 401/403 say nothing more."""

from __future__ import annotations

from typing import Any

import pytest

from cdx.errors import ConfigError
from cdx.realtime.config import CredentialSpec, RealtimeSpec, hash_key, settings_from
from cdx.topology import Topology
from tests.realtime.conftest import KEYS


def test_missing_or_wrong_credentials_get_a_bare_401(api: Any) -> None:
    a = api("store-0001")
    for headers in ({}, {"Authorization": "Bearer not-a-key"}, {"Authorization": "Basic abc"},
                    {"Authorization": f"Bearer {KEYS['store-0001']}x"}):
        r = a.client.get(a.url("/gift-cards/1234567890"), headers=headers)
        assert r.status_code == 401
        assert r.json() == {"error": "unauthorized", "message": "authentication required"}
    r = a.client.post(a.url("/gift-cards"), json={"bad": 1}, headers={"Idempotency-Key": "k"})
    assert r.status_code == 401, "no validation detail before authentication"


def test_a_channel_cannot_act_as_another(api: Any) -> None:
    houston, seattle = api("store-0001"), api("store-0002")
    number = houston.post("/gift-cards", {"amount": "10", "currency": "USD"}).json()["number"]
    seattle.channel = "store-0001"  # store-0002's key, acting as store-0001
    r = seattle.post(f"/gift-cards/{number}/redeem", {"amount": "5"})
    assert r.status_code == 403 and r.json() == {"error": "forbidden", "message": "not allowed"}
    assert seattle.get(f"/gift-cards/{number}").status_code == 403
    assert houston.get(f"/gift-cards/{number}").json()["balance"] == "10.00"


def test_a_register_acts_for_its_own_store_only(api: Any) -> None:
    register = api("store-0001-pos-01")
    r = register.post("/gift-cards", {"amount": "10", "currency": "USD"})
    assert r.status_code == 201 and r.json()["issued_by"] == "store-0001-pos-01"
    register.channel = "store-0002"
    assert register.post("/gift-cards", {"amount": "10", "currency": "USD"}).status_code == 403


def test_legal_entity_scope(api: Any) -> None:
    us, de = api("store-0001"), api("store-1001")
    r = de.post("/gift-cards", {"amount": "10", "currency": "EUR"})
    assert r.status_code == 201 and r.json()["legal_entity"] == "dert"
    number = r.json()["number"]
    assert us.get(f"/gift-cards/{number}", legal_entity="dert").status_code == 403
    assert us.post(f"/gift-cards/{number}/redeem", {"amount": "1"}, legal_entity="dert").status_code == 403
    assert us.get(f"/gift-cards/{number}").status_code == 404
    assert de.get(f"/gift-cards/{number}", legal_entity="DERT").json()["balance"] == "10.00"


def test_settings_refuse_unsafe_or_unknown_credentials(sample: Topology) -> None:
    env = {"K": "k" * 32, "SHORT": "abc"}

    def settings(**cred: str) -> Any:
        return settings_from(RealtimeSpec(credentials=(CredentialSpec(**cred),)), sample, "realtime.yaml", env)

    with pytest.raises(ValueError, match="must be a"):
        CredentialSpec(principal="store-0001", api_key="plain-key-in-a-file")
    with pytest.raises(ConfigError, match=r"credentials\[0\]\.principal: 'store-9'"):
        settings(principal="store-9", api_key="${K}")
    with pytest.raises(ConfigError, match="MISSING is not set"):
        settings(principal="store-0001", api_key="${MISSING}")
    with pytest.raises(ConfigError, match="shorter than 16"):
        settings(principal="store-0001", api_key="${SHORT}")
    ok = settings(principal="store-0001", api_key_sha256=hash_key("k" * 32))
    assert ok.principal_for_key("k" * 32).channel == "store-0001"  # type: ignore[union-attr]
    assert "k" * 32 not in repr(ok), "only the hash is kept"
