"""Is Kafka there? A quick check before a one-shot command waits on librdkafka's timeouts.

``require_kafka(servers)`` opens a TCP connection to each bootstrap server (in turn, ``timeout``
seconds each) and returns as soon as one accepts; when none does it raises ``KafkaUnreachable``
naming the servers, why each failed and how to fix it. A refused connection (nothing listens on
the port) fails at once instead of after the client's 10-30 s metadata timeout. It does not prove
the broker is healthy (TLS/SASL and metadata still come later); the clients' own errors then
apply, turned into one line by ``kafka_failure``.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from typing import Any

from cdx.errors import KafkaUnreachable

HINT = "start the broker (make services) or fix kafka.bootstrap_servers in the topology"


def _servers(target: str | Mapping[str, Any]) -> str:
    return str(target.get("bootstrap.servers", "")) if isinstance(target, Mapping) else str(target)


def _split(server: str) -> tuple[str, int] | None:
    host, _, port = server.strip().rpartition(":")
    host = host.strip("[]") or "localhost"
    try:
        return host, int(port)
    except ValueError:
        return None


def require_kafka(target: str | Mapping[str, Any], timeout: float = 3.0) -> None:
    """Return once a bootstrap server accepts a TCP connection, else raise ``KafkaUnreachable``."""
    servers = _servers(target)
    failures = []
    for server in servers.split(","):
        address = _split(server)
        if address is None:
            failures.append(f"{server.strip()}: not host:port")
            continue
        try:
            with socket.create_connection(address, timeout=timeout):
                return
        except TimeoutError:
            failures.append(f"{server.strip()}: no answer in {timeout:g}s")
        except OSError as exc:
            failures.append(f"{server.strip()}: {exc.strerror or type(exc).__name__}")
    if len(failures) == 1:
        failures = [failures[0].split(": ", 1)[-1]]
    raise KafkaUnreachable(f"Kafka at {servers}", "; ".join(failures) or "no bootstrap servers", HINT)


def kafka_failure(target: str | Mapping[str, Any], exc: BaseException, doing: str = "") -> KafkaUnreachable:
    """A Kafka client's ``KafkaException`` or ``TimeoutError`` as one ``KafkaUnreachable`` line."""
    if isinstance(exc, KafkaUnreachable):  # already one line: say what failed once, not nested
        return exc
    err = exc.args[0] if exc.args else None
    text = str(err.str()) if err is not None and hasattr(err, "str") else str(exc)
    if not text:
        text = "no answer in time" if isinstance(exc, TimeoutError) else type(exc).__name__
    out = KafkaUnreachable(f"Kafka at {_servers(target)}", f"{doing}: {text}" if doing else text, HINT)
    out.__cause__ = exc
    return out
