"""Options and helpers shared by the long-running commands."""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import Any

import typer

from cdx.topology.model import Topology

TOPOLOGY_OPTION = typer.Option(None, "--topology", "-t", envvar="CDX_TOPOLOGY",
                               help="Topology file (default: ./topology.yaml).")
METRICS_PORT_OPTION = typer.Option(None, "--metrics-port", help="Serve Prometheus metrics on this port.")


def load(path: Path | None) -> Topology:
    from cdx.topology import load_topology

    return load_topology(path)


def serve_metrics(port: int | None) -> None:
    if port:
        from prometheus_client import start_http_server

        start_http_server(port, addr="127.0.0.1")


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("cdx.kafka.librdkafka").setLevel(logging.WARNING)


def on_stop_signals(stop: Any) -> None:
    """Call ``stop()`` on SIGTERM and SIGINT (the current unit of work then finishes)."""

    def handler(signum: int, _frame: Any) -> None:
        stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
