"""``cdx capture`` and ``cdx hq``: HQ change tracking and the capture connector."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import typer

from cdx.cli.app import console, user_errors
from cdx.cli.common import (
    HA_OPTION,
    LEASE_TIMEOUT_OPTION,
    METRICS_PORT_OPTION,
    TOPOLOGY_OPTION,
    hq_database,
    live_topology,
    load,
    require_hq,
    run_role,
    setup_logging,
)

hq_app = typer.Typer(help="HQ database: change tracking set-up and cleanup.", no_args_is_help=True)


@user_errors
def capture(
    ctx: typer.Context,
    topology: Path | None = TOPOLOGY_OPTION,
    poll_interval: float = typer.Option(0.05, min=0.0, help="Seconds between polls when idle (an idle poll asks HQ"
                                        " for its tracking version only)."),
    batch_size: int = typer.Option(5000, min=1, help="Tracking entries read per table per transaction."),
    ha: bool = HA_OPTION,
    lease_timeout: float = LEASE_TIMEOUT_OPTION,
    metrics_port: int | None = METRICS_PORT_OPTION,
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Publish HQ changes to the per-table topics, exactly once (runs until SIGTERM)."""
    if ctx.invoked_subcommand is not None:  # cdx capture resnapshot
        return
    from cdx.connectors.capture.connector import CaptureConnector

    setup_logging(verbose)
    live = live_topology(topology, "capture")
    topo = live.current
    require_hq(topo, live.close)
    connector = CaptureConnector(topo, poll_interval=poll_interval, batch_size=batch_size)
    run_role(live, connector, [topo.hq.name], "capture", metrics_port,
             started=lambda: f"capturing {len(connector.tables)} HQ tables from {topo.hq.redacted()}",
             lease=connector.hold_lease(lease_timeout) if ha else None)


@hq_app.command("enable-tracking")
@user_errors
def enable_tracking(
    topology: Path | None = TOPOLOGY_OPTION,
    retention_days: float = typer.Option(2.0, min=0.0, help="How long change-tracking entries are kept."),
    only_new: bool = typer.Option(False, "--only-new", help="Only the tables not tracked yet (no DDL on tracked"
                                  " tables: safe while HQ applications write to them)."),
) -> None:
    """Enable change tracking on the HQ database and every download subjob's table (idempotent)."""
    from cdx.connectors.capture.tracking import TableRef, tracker_for
    from cdx.dialects.reach import naming

    topo = load(topology)
    require_hq(topo)
    if only_new:
        from cdx.connectors.capture.enable import enable_new_tables

        with naming(f"the HQ database ({topo.hq.redacted()})"):
            new = enable_new_tables(topo, timedelta(days=retention_days))
        console.print(f"change tracking enabled on {len(new)} new tables"
                      + (f": {', '.join(map(str, new))}" if new else " (every table was tracked already)"))
        return
    tables = [TableRef(s.hq_table.schema, s.hq_table.name) for s in topo.download_subjobs()
              if s.source_topic is None]
    with hq_database(topo) as (conn, _):
        tracker_for(conn, topo.hq.dialect).enable(tables, timedelta(days=retention_days))
    console.print(f"change tracking enabled on {len(tables)} tables (retention {retention_days:g} days)")


@hq_app.command("tracking-cleanup")
@user_errors
def tracking_cleanup(
    topology: Path | None = TOPOLOGY_OPTION,
    retention_hours: float | None = typer.Option(None, min=0.0, help="Keep entries this recent (default: the"
                                                 " retention given to enable-tracking)."),
) -> None:
    """Remove change-tracking entries older than the retention; raises the minimum valid version."""
    from cdx.connectors.capture.tracking import tracker_for

    topo = load(topology)
    require_hq(topo)
    with hq_database(topo) as (conn, _):
        tracker_for(conn, topo.hq.dialect).cleanup(timedelta(hours=retention_hours) if retention_hours is not None
                                                   else None)
    console.print("tracking cleanup done")
