"""Upload commands: ``cdx channel upload``, ``cdx channel offline-sync``, ``cdx hq upload-sink``,
``cdx status`` (upload sessions and positions). Registered by ``cdx.cli.main``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from cdx.cli.app import console, new_table, user_errors
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

CHANNELS_OPTION = typer.Option(None, "--channel", "-c",
                               help="Channel id (repeatable; default: every uploading channel).")
VERBOSE_OPTION = typer.Option(False, "--verbose", "-v")

if TYPE_CHECKING:
    from cdx.topology import Topology


@user_errors
def upload(
    topology: Path | None = TOPOLOGY_OPTION,
    channel: list[str] | None = CHANNELS_OPTION,
    poll_interval: float = typer.Option(0.2, min=0.0, help="Seconds between polls of an idle channel."),
    batch_size: int = typer.Option(5000, min=1, help="Rows read per table per poll (at most)."),
    gap_grace: float = typer.Option(5.0, min=0.0, help="Seconds a counter gap is awaited at least, even when"
                                                      " the database shows it is permanent."),
    gap_timeout: float = typer.Option(600.0, min=0.0, help="Seconds after which a counter gap is given up in any"
                                                          " case; longer than any POS transaction."),
    max_backoff: float = typer.Option(30.0, min=0.1,
                                      help="Longest wait (seconds) before retrying an unreachable database."),
    from_counter: int | None = typer.Option(None, "--from-counter", min=1,
                                            help="Recovery: publish the channel's upload tables again from this"
                                                 " counter (once, on start; lifts a halt). Needs one --channel."
                                                 " Rows HQ already has are absorbed as duplicates."),
    table: list[str] | None = typer.Option(None, "--table", help="With --from-counter: only this upload table"
                                                                 " (channel table or subjob id; repeatable)."),
    ha: bool = HA_OPTION,
    lease_timeout: float = LEASE_TIMEOUT_OPTION,
    metrics_port: int | None = METRICS_PORT_OPTION,
    verbose: bool = VERBOSE_OPTION,
) -> None:
    """Publish new rows of the channels' upload tables to their upload topics, exactly once (until SIGTERM)."""
    from cdx.connectors.upload.plan import restart_tables, uploading_channels
    from cdx.connectors.upload.uploader import UploadConnector, UploadOptions
    from cdx.errors import ConfigError

    if from_counter is not None and len(channel or []) != 1:
        raise ConfigError("--from-counter restarts one channel's upload: give exactly one --channel")
    if table and from_counter is None:
        raise ConfigError("--table only goes with --from-counter")

    def serves(t: Topology) -> list[str]:
        """The channels served; unknown ids and --table names refused on the file, before Kafka."""
        channels = uploading_channels(t, channel or None)
        for c in channels if from_counter is not None else ():
            restart_tables(t, c.id, table)
        return [c.id for c in channels]

    setup_logging(verbose)
    live = live_topology(topology, "upload", serves=serves)
    connector = UploadConnector(live.current, channel or None, UploadOptions(
        poll_interval=poll_interval, batch_size=batch_size, gap_grace=gap_grace, gap_timeout=gap_timeout,
        max_backoff=max_backoff, from_counter=from_counter, from_tables=table or None, ha=ha,
        lease_timeout=lease_timeout))
    run_role(live, connector, [c.id for c in connector.channels], "upload", metrics_port,
             lambda: f"uploading {len(connector.channels)} channels: " + ", ".join(c.id for c in connector.channels)
             + (" (each once it holds the channel's lease; standby until then)" if ha else ""))


@user_errors
def offline_sync(
    topology: Path | None = TOPOLOGY_OPTION,
    channel: list[str] | None = typer.Option(None, "--channel", "-c",
                                             help="Channel id (repeatable; default: every channel with registers)."),
    poll_interval: float = typer.Option(1.0, min=0.0, help="Seconds between polls when nothing is new."),
    gap_timeout: float = typer.Option(600.0, min=0.0,
                                      help="Seconds after which a counter gap in a register is given up."),
    max_backoff: float = typer.Option(30.0, min=0.1,
                                      help="Longest wait (seconds) before retrying an unreachable database."),
    metrics_port: int | None = METRICS_PORT_OPTION,
    verbose: bool = VERBOSE_OPTION,
) -> None:
    """Copy sales from offline-register databases into their channel databases, exactly once (until SIGTERM)."""
    from cdx.connectors.upload.offline import OfflineSync, SyncOptions, syncing_channels

    setup_logging(verbose)
    live = live_topology(topology, "offline-sync",
                         serves=lambda t: [c.id for c in syncing_channels(t, channel or None)])
    sync = OfflineSync(live.current, channel or None, SyncOptions(poll_interval=poll_interval,
                                                                  gap_timeout=gap_timeout, max_backoff=max_backoff))
    registers = lambda: [r.id for c in sync.channels for r in c.offline_registers]  # noqa: E731
    run_role(live, sync, [c.id for c in sync.channels], "offline-sync", metrics_port, kafka=False,
             started=lambda: f"syncing {len(registers())} offline registers: " + ", ".join(registers()))


@user_errors
def upload_sink(
    ctx: typer.Context,
    topology: Path | None = TOPOLOGY_OPTION,
    batch_size: int = typer.Option(5000, min=1, help="Records applied per HQ transaction (at most)."),
    instance_id: str | None = typer.Option(None, "--instance-id",
                                           help="Kafka static group membership id: a restarted sink gets its"
                                                " partitions back at once (one per running sink)."),
    session_retention_days: float = typer.Option(14.0, "--session-retention-days", min=0.0,
                                                 help="Delete upload sessions older than this (0: by count only)."),
    max_sessions: int = typer.Option(50_000, "--max-sessions", min=0, help="Upload sessions kept per channel at"
                                                                           " most (0: no limit)."),
    metrics_port: int | None = METRICS_PORT_OPTION,
    verbose: bool = VERBOSE_OPTION,
) -> None:
    """Apply every channel's upload topic to the HQ tables, insert-only, exactly once (until SIGTERM)."""
    if ctx.invoked_subcommand is not None:  # cdx hq upload-sink replay
        return
    import os
    import socket

    from cdx.connectors.upload.sink import SinkOptions, UploadSink
    from cdx.errors import ConfigError

    setup_logging(verbose)
    if session_retention_days < 0 or max_sessions < 0:
        raise ConfigError("--session-retention-days and --max-sessions must be 0 or more (0: no limit)")
    live = live_topology(topology, "hq-upload-sink")
    require_hq(live.current, live.close)
    sink = UploadSink(live.current, SinkOptions(batch_size=batch_size, instance_id=instance_id,
                                                session_retention_days=session_retention_days,
                                                session_max_rows=max_sessions))
    run_role(live, sink, [instance_id or f"{socket.gethostname()}-{os.getpid()}"], "upload sink", metrics_port,
             lambda: f"applying uploads of {len(sink.channels)} channels to {len(sink.tables)} HQ tables")


@user_errors
def status(
    topology: Path | None = TOPOLOGY_OPTION,
    sessions: int = typer.Option(10, "--sessions", min=0, help="Latest upload sessions to list."),
) -> None:
    """Upload status: per channel, the HQ upload sessions and each upload table's position."""
    from cdx.cli.post_upload_view import print_post_processing
    from cdx.connectors.upload import sessions as hist

    topo = load(topology)
    require_hq(topo)
    with hq_database(topo) as (conn, d):
        summary = {s.channel: s for s in hist.summary(conn, d)}
        latest = hist.recent(conn, d, sessions)
    positions = _upload_positions(topo)
    pos_table, hq_table = _channel_tables(topo, positions, summary)
    console.print(pos_table)
    console.print(hq_table)
    if latest:
        console.print(_recent_sessions(latest))
    print_post_processing(topo, sessions)


def _upload_positions(topo: Any) -> dict[str, Any]:
    """The committed upload positions (``{}`` with a warning while Kafka is down: HQ's view still shows)."""
    from cdx.connectors.upload.uploader import load_upload_positions, upload_positions_topic
    from cdx.kafka.config import client_config
    from cdx.kafka.reach import require_kafka

    k = topo.kafka
    try:
        require_kafka(k.bootstrap_servers)
        return dict(load_upload_positions(client_config(k.bootstrap_servers, k.security),
                                          upload_positions_topic(k.topic_prefix)))
    except Exception as exc:  # Kafka down: still show HQ's view
        console.print(f"[yellow]upload positions unavailable: {exc}[/]")
        return {}


def _channel_tables(topo: Any, positions: dict[str, Any], summary: dict[str, Any]) -> tuple[Any, Any]:
    """Per uploading channel: its tables' positions, and its HQ upload sessions summed up."""
    from cdx.connectors.upload.uploader import uploading_channels

    pos_table = new_table("Upload positions (channel tables read so far)",
                          ("channel", "table", "low watermark", "open gaps", "skipped"), overflow="fold")
    hq_table = new_table("Upload sessions at HQ", ("channel", "sessions", "failed", "inserted", "duplicates",
                                                   "dead letters", "last session (UTC)", "status"), overflow="fold")
    for c in uploading_channels(topo):
        mine = sorted((key.split("/", 1)[1], p) for key, p in positions.items() if key.startswith(f"{c.id}/"))
        if not mine:
            pos_table.add_row(c.id, "-", "-", "-", "-")
        for i, (name, p) in enumerate(mine):
            pos_table.add_row(c.id if i == 0 else "", name, str(p.low), str(p.open_gaps()), str(p.skipped))
        s = summary.get(c.id)
        if s is None:
            hq_table.add_row(c.id, "0", "0", "0", "0", "0", "", "")
        else:
            hq_table.add_row(c.id, str(s.sessions), str(s.failed), str(s.rows_inserted), str(s.rows_duplicate),
                             str(s.rows_dead_lettered),
                             f"{s.last_finished:%Y-%m-%d %H:%M:%S}" if s.last_finished else "", s.last_status or "")
    return pos_table, hq_table


def _recent_sessions(latest: list[Any]) -> Any:
    """The latest upload sessions, one row each."""
    recent = new_table(f"Latest {len(latest)} upload sessions", (
        "finished (UTC)", "channel", "job", "HQ table", "offsets", "received", "inserted", "duplicates", "dead",
        "status", "error"), overflow="fold")
    for x in latest:
        recent.add_row(f"{x.finished_at:%H:%M:%S.%f}"[:-3] if x.finished_at else "", x.channel, x.job or "",
                       x.hq_table or "", f"{x.first_offset}-{x.last_offset}", str(x.rows_received),
                       str(x.rows_inserted), str(x.rows_duplicate), str(x.rows_dead_lettered), x.status,
                       (x.error or "")[:80])
    return recent
