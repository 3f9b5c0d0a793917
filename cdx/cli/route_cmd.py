"""``cdx route``: the router (per-table topics -> channel data-group topics): transactional engine or faust."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from cdx.cli.app import user_errors
from cdx.cli.common import (
    METRICS_PORT_OPTION,
    TOPOLOGY_OPTION,
    load,
    serve_metrics,
    set_up,
)
from cdx.stage.signals import stop_on_signals


@user_errors
def route(
    ctx: typer.Context,
    topology: Path | None = TOPOLOGY_OPTION,
    datadir: Path | None = typer.Option(None, help="Data directory: the sqlite key store's file; faust's data"
                                                    " (default: a new temporary directory for faust)."),
    engine: str = typer.Option("transactional", help="transactional (exactly-once, default) or faust"
                                                      " (at-least-once; sinks drop re-sends by source position)."),
    key_store: str = typer.Option("memory", help="Transactional engine's per-key state: memory, or sqlite"
                                                  " (a file in --datadir, for millions of keys)."),
    web_port: int | None = typer.Option(None, help="Enable faust's web server on this port."),
    reload_interval: float = typer.Option(1.0, min=0.0, help="Seconds between checks of the topology file."),
    session_timeout: float = typer.Option(10.0, min=1.0, help="Seconds before a dead worker's partitions move on."),
    instance_id: str | None = typer.Option(None, envvar="CDX_ROUTER_INSTANCE_ID",
                                           help="Static group membership id (unique per worker): a restarted"
                                                " worker takes its partitions back at once."),
    metrics_port: int | None = METRICS_PORT_OPTION,
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Route HQ changes to every channel data group's topic, exactly once (runs until SIGTERM).

    SIGHUP or a changed topology file reloads the topology; run more workers to scale out.
    """
    if ctx.invoked_subcommand is not None:  # cdx route replay
        return
    from cdx.streams.worker import run

    topo = load(topology)  # the worker loads it again; here: errors before anything starts
    with stop_on_signals(lambda: None) as stopped:  # the worker installs its own within; all restored after
        if not set_up(lambda: None, "router", stopped, kafka=topo.kafka.bootstrap_servers):
            return
        serve_metrics(metrics_port)
        code = run(topology, datadir=datadir, loglevel="debug" if verbose else "info", web_port=web_port,
                   reload_interval=reload_interval, session_timeout=session_timeout, instance_id=instance_id,
                   engine=engine, key_store=key_store)
    if code:
        sys.exit(code)
