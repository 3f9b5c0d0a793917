"""TLS client certificates: a certificate's common name is the caller (no API key), checked like a key."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import httpx
import pytest

from cdx.topology import Topology
from tests.realtime.conftest import make_hq
from tests.realtime.process import Service, write_config

pytestmark = [pytest.mark.realtime_long,
              pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")]


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _certificates(folder: Path) -> None:
    """ca.pem, server.pem/key (127.0.0.1) and a client certificate for store-0001 and one for a stranger."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
             "-subj", "/CN=cdx test CA", cwd=folder)
    (folder / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    for name, cn in (("server", "127.0.0.1"), ("store", "store-0001"), ("stranger", "store-9999")):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj",
                 f"/CN={cn}", cwd=folder)
        extra = ["-extfile", "san.cnf"] if name == "server" else []
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.pem", "-days", "2", *extra, cwd=folder)


def test_client_certificate_names_the_caller(tmp_path: Path, sample: Topology) -> None:
    _certificates(tmp_path)
    dsn = f"sqlite:///{tmp_path / 'hq.db'}"
    make_hq("sqlite", dsn, sample)
    svc = Service(*write_config(tmp_path, "sqlite", dsn), tmp_path / "serve.log",
                  extra=["--tls-cert", str(tmp_path / "server.pem"), "--tls-key", str(tmp_path / "server.key"),
                         "--tls-client-ca", str(tmp_path / "ca.pem")], scheme="https")

    def client(name: str) -> httpx.Client:
        context = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
        context.load_cert_chain(str(tmp_path / f"{name}.pem"), str(tmp_path / f"{name}.key"))
        return httpx.Client(base_url=svc.url, verify=context, timeout=30)

    svc.health_client = lambda: client("store")  # type: ignore[method-assign]
    svc.start()
    try:
        with client("store") as store:
            r = store.post("/v1/channels/store-0001/gift-cards", json={"amount": "5", "currency": "USD"},
                           headers={"Idempotency-Key": "tls-1"})
            assert r.status_code == 201 and r.json()["issued_by"] == "store-0001", r.text
            assert store.get("/v1/channels/store-0002/gift-cards/1234567890").status_code == 403
        with client("stranger") as stranger:
            assert stranger.get("/v1/channels/store-0001/gift-cards/1234567890").status_code == 401
        with httpx.Client(base_url=svc.url, verify=str(tmp_path / "ca.pem"), timeout=30) as anonymous, \
                pytest.raises(httpx.TransportError):
            anonymous.get("/health")
    finally:
        svc.stop()
