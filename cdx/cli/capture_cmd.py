"""``cdx capture`` and ``cdx hq``: HQ change tracking and the capture connector."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import typer

from cdx.cli.app import console, user_errors
from cdx.cli.common import (
    METRICS_PORT_OPTION,
    TOPOLOGY_OPTION,
    load,
    on_stop_signals,
    serve_metrics,
    set_up,
    setup_logging,
)

hq_app = typer.Typer(help="HQ database: change tracking set-up and cleanup.", no_args_is_help=True)


@user_errors
def capture(
    topology: Path | None = TOPOLOGY_OPTION,
    poll_interval: float = typer.Option(0.05, help="Seconds between polls when idle (an idle poll asks HQ"
                                        " for its tracking version only)."),
    batch_size: int = typer.Option(5000, help="Tracking entries read per table per transaction."),
    metrics_port: int | None = METRICS_PORT_OPTION,
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Publish HQ changes to the per-table topics, exactly once (runs until SIGTERM)."""
    from connectors.capture.connector import CaptureConnector

    setup_logging(verbose)
    topo = load(topology)
    connector = CaptureConnector(topo, poll_interval=poll_interval, batch_size=batch_size)
    stopped = on_stop_signals(connector.stop)
    serve_metrics(metrics_port)
    if not set_up(connector.setup, "capture", stopped, kafka=topo.kafka.bootstrap_servers):
        return
    console.print(f"capturing {len(connector.tables)} HQ tables from {topo.hq.redacted()}")
    connector.run()


@hq_app.command("enable-tracking")
@user_errors
def enable_tracking(
    topology: Path | None = TOPOLOGY_OPTION,
    retention_days: float = typer.Option(2.0, help="How long change-tracking entries are kept."),
) -> None:
    """Enable change tracking on the HQ database and every download subjob's table (idempotent)."""
    from cdx.dialects.reach import naming
    from connectors.capture.tracking import TableRef, open_tracker

    topo = load(topology)
    with naming(f"the HQ database ({topo.hq.redacted()})"):
        tracker = open_tracker(topo.hq.dialect, topo.hq.dsn)
    tables = [TableRef(s.hq_table.schema, s.hq_table.name) for s in topo.download_subjobs()
              if s.source_topic is None]
    try:
        tracker.enable(tables, timedelta(days=retention_days))
    finally:
        tracker.conn.close()
    console.print(f"change tracking enabled on {len(tables)} tables (retention {retention_days:g} days)")


@hq_app.command("tracking-cleanup")
@user_errors
def tracking_cleanup(
    topology: Path | None = TOPOLOGY_OPTION,
    retention_hours: float | None = typer.Option(None, help="Keep entries this recent (default: the"
                                                 " retention given to enable-tracking)."),
) -> None:
    """Remove change-tracking entries older than the retention; raises the minimum valid version."""
    from cdx.dialects.reach import naming
    from connectors.capture.tracking import open_tracker

    topo = load(topology)
    with naming(f"the HQ database ({topo.hq.redacted()})"):
        tracker = open_tracker(topo.hq.dialect, topo.hq.dsn)
    try:
        tracker.cleanup(timedelta(hours=retention_hours) if retention_hours is not None else None)
    finally:
        tracker.conn.close()
    console.print("tracking cleanup done")
