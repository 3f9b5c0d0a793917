"""Run the service: check the set-up, bind the port, serve with uvicorn until SIGTERM/SIGINT.

Start-up refuses with one clear error (``ConfigError``) when the port is taken, the HQ database
cannot be reached or its DSN is wrong, or the service's tables are missing (``cdx hq
init-realtime``). Once serving, an HQ outage is answered with 503 + ``Retry-After`` and the
service recovers by itself when HQ is back. SIGTERM lets in-flight requests finish. With several
workers the socket is bound once and shared by forked processes (``cdx.realtime.workers``).
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cdx.dialects import Connection
from cdx.errors import ConfigError
from cdx.realtime.config import RealtimeSettings
from cdx.realtime.db import Hq, HqUnavailable
from cdx.realtime.schema import missing_tables

log = logging.getLogger("cdx.realtime")
GRACE_SECONDS = 10
"""How long SIGTERM lets in-flight requests finish."""
BIND_RETRY_SECONDS = 3.0
"""A restarted service waits this long for a killed predecessor's workers to release the port."""


@dataclass(frozen=True)
class Tls:
    """Server certificate and key; with ``client_ca``, clients must present a certificate it signed
    and are known by its common name."""

    certfile: Path
    keyfile: Path
    client_ca: Path | None = None


def open_hq(connect: Callable[[str], Connection], dsn: str, where: str) -> Connection:
    """``connect(dsn)``; a failure is a ``ConfigError`` naming the HQ database ``where`` and the fix."""
    try:
        return connect(dsn)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"cannot open the HQ database {where}: {reason}; check hq.dsn in the topology and that"
                          " the database is running") from None


def check_hq(hq: Hq, where: str) -> None:
    """Raise ``ConfigError`` unless HQ answers and holds the service's tables."""
    with closing(open_hq(hq.caps.connect, hq.dsn, where)) as conn:
        missing = missing_tables(conn, hq.caps.dialect)
    if missing:
        raise ConfigError(f"the HQ database {where} lacks the Real-time Service tables ({', '.join(missing[:3])}"
                          f"{'...' if len(missing) > 3 else ''}); create them with `cdx hq init-realtime`")


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``; ``ConfigError`` when the address is taken or invalid."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    deadline = time.monotonic() + BIND_RETRY_SECONDS
    while True:
        try:
            sock.bind((host, port))
            break
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE and time.monotonic() < deadline:
                time.sleep(0.1)
                continue
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(f"port {port} on {host} is already in use; stop the other process or choose"
                                  " another port with --port") from None
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}; check --host and --port") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _common_name(cert: dict[str, Any]) -> str | None:
    for rdn in cert.get("subject", ()):
        for name, value in rdn:
            if name == "commonName":
                return str(value)
    return None


def cert_naming_protocol(names: dict[tuple[Any, ...], str]) -> type:
    """An h11 protocol that records each TLS client's certificate common name by client address."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class CertNamingProtocol(H11Protocol):
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            cert = transport.get_extra_info("peercert")
            name = _common_name(cert) if cert else None
            if name and self.client:
                names[tuple(self.client)] = name

        def connection_lost(self, exc: Exception | None) -> None:
            if self.client:
                names.pop(tuple(self.client), None)
            super().connection_lost(exc)

    return CertNamingProtocol


def serve(settings: RealtimeSettings, dialect: str, dsn: str, where: str, *, host: str, port: int,
          pool_size: int, workers: int = 1, tls: Tls | None = None, access_log: bool = False) -> None:
    """Check the set-up, then serve until stopped (see module docstring). ``workers`` > 1 forks that
    many processes on the one socket (``cdx.realtime.workers``), each with ``pool_size`` connections."""
    import uvicorn  # noqa: F401  (imported before forking: workers share the loaded modules)

    from cdx.realtime.app import create_app  # noqa: F401
    from cdx.realtime.workers import supervise

    os.environ.setdefault("PGCONNECT_TIMEOUT", "5")
    check_hq(Hq(dialect, dsn, size=pool_size), where)
    sock = bind(host, port)

    def run_worker() -> None:
        _run_uvicorn(settings, Hq(dialect, dsn, size=pool_size), sock, tls, access_log)

    log.info("cdx realtime serving on %s://%s:%d over %s (%d worker%s, %d HQ connections each)",
             "https" if tls else "http", host, port, where, workers, "" if workers == 1 else "s", pool_size)
    if workers == 1:
        run_worker()
    else:
        supervise(workers, run_worker, grace_seconds=GRACE_SECONDS + 5)


def _run_uvicorn(settings: RealtimeSettings, hq: Hq, sock: socket.socket, tls: Tls | None, access_log: bool) -> None:
    """One uvicorn server (uvloop and httptools when installed) on ``sock`` until SIGTERM/SIGINT."""
    import ssl

    import uvicorn

    from cdx.realtime.app import create_app

    app = create_app(settings, hq)
    options: dict[str, Any] = {}
    if tls is not None:
        options = {"ssl_certfile": str(tls.certfile), "ssl_keyfile": str(tls.keyfile)}
        if tls.client_ca is not None:
            options |= {"ssl_ca_certs": str(tls.client_ca), "ssl_cert_reqs": ssl.CERT_REQUIRED,
                        "http": cert_naming_protocol(app.state.client_cert_names)}
    # proxy_headers off: the service trusts no X-Forwarded-For (the caller's address is the peer's),
    # and one middleware less runs per request
    config = uvicorn.Config(app, log_level="info", access_log=access_log, timeout_graceful_shutdown=GRACE_SECONDS,
                            proxy_headers=False, **options)
    with closing(hq):
        uvicorn.Server(config).run(sockets=[sock])


__all__ = ["HqUnavailable", "Tls", "bind", "check_hq", "serve"]
