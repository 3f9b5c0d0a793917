"""``cdx sink`` (run channel sinks) and ``cdx channel init`` (create channel tables)."""

from __future__ import annotations

from pathlib import Path

import typer

from cdx.cli.app import console, user_errors
from cdx.cli.common import METRICS_PORT_OPTION, TOPOLOGY_OPTION, load, on_stop_signals, serve_metrics, setup_logging
from cdx.errors import FatalError

channel_app = typer.Typer(help="Channel and offline-register databases.", no_args_is_help=True)

CHANNEL_OPTION = typer.Option(None, "--channel", "-c",
                              help="Channel or offline-register id (repeatable; default: all).")


@user_errors
def sink(
    topology: Path | None = TOPOLOGY_OPTION,
    channel: list[str] | None = CHANNEL_OPTION,
    batch_size: int = typer.Option(5000, help="Records applied per database transaction (at most)."),
    metrics_port: int | None = METRICS_PORT_OPTION,
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Apply group topics to channel databases, exactly once (runs until SIGTERM)."""
    from connectors.sink.host import SinkHost
    from connectors.sink.runner import SinkSettings

    setup_logging(verbose)
    host = SinkHost(load(topology), channel or None, SinkSettings(batch_size=batch_size))
    on_stop_signals(host.stop)
    serve_metrics(metrics_port)
    host.setup()
    console.print(f"sinking {len(host.specs)} database{'s' if len(host.specs) != 1 else ''}: "
                  + ", ".join(s.owner_id for s in host.specs))
    if not host.run():
        failed = "; ".join(f"{s.name}: {s.last_error}" for s in host.failed())
        raise FatalError(f"sink stopped with errors: {failed}")


@channel_app.command("init")
@user_errors
def init(
    topology: Path | None = TOPOLOGY_OPTION,
    channel: list[str] | None = CHANNEL_OPTION,
) -> None:
    """Create the state table and the channel tables (types from the routed Avro schemas)."""
    from connectors.sink.init import init_databases

    for r in init_databases(load(topology), channel or None):
        console.print(f"[bold]{r.owner_id}[/] ({r.database}): {len(r.created)} created, {len(r.existing)} existing,"
                      f" {len(r.added_columns)} columns added, {len(r.pending)} pending")
        for what, names in (("created", r.created), ("added", r.added_columns), ("pending (no records yet)",
                                                                                   r.pending)):
            if names:
                console.print(f"  {what}: {', '.join(names)}", soft_wrap=True)
