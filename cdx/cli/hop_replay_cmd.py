"""Replay on the other hops: ``cdx route replay``, ``cdx hq upload-sink replay``, ``cdx capture resnapshot``.

``cdx capture``, ``cdx route`` and ``cdx hq upload-sink`` stay the long-running roles (their group
callbacks, run when no subcommand is given); these are their one-shot subcommands. (The channel's own
replay is ``cdx replay``; the channel upload's is ``cdx channel upload --from-counter``.)
"""

from __future__ import annotations

import time
from pathlib import Path

import typer

from cdx.cli.app import console, user_errors
from cdx.cli.common import TOPOLOGY_OPTION, load, print_rewound, require_hq, require_kafka, start_timestamp

capture_app = typer.Typer(invoke_without_command=True, no_args_is_help=False)
route_app = typer.Typer(invoke_without_command=True, no_args_is_help=False)
upload_sink_app = typer.Typer(invoke_without_command=True, no_args_is_help=False)

FROM_OFFSET = typer.Option(None, "--from-offset", help="Offset to start from (every partition, or those given).")
FROM_TIMESTAMP = typer.Option(None, "--from-timestamp", help="Start at the first record written at or after this"
                                                             " time (ISO 8601, UTC unless an offset is given; or"
                                                             " epoch ms).")
PARTITION = typer.Option(None, "--partition", "-p", help="Only this partition (repeatable).")
NEVER_CONSUMED = "already at or before that position, or never consumed"
WAIT = typer.Option(0.0, "--wait", help="Seconds to wait for a just-stopped role's group membership to expire"
                                        " before refusing.")


@route_app.command("replay")
@user_errors
def route_replay(
    table: str = typer.Option(..., "--table", help="HQ table (dbo.INVENTTABLE) or download subjob id."),
    from_offset: int | None = FROM_OFFSET,
    from_timestamp: str | None = FROM_TIMESTAMP,
    partition: list[int] | None = PARTITION,
    wait: float = WAIT,
    topology: Path | None = TOPOLOGY_OPTION,
) -> None:
    """Route a table topic's records again into the groups, from an offset or a time (idempotent).

    Every router worker must be stopped (refused otherwise); the router routes from there when started."""
    from cdx.streams.replay import download_subjob, replay_route

    topo = load(topology)
    ts = start_timestamp(from_offset, from_timestamp)
    download_subjob(topo, table)
    require_kafka(topo)
    result = replay_route(topo, table, from_offset=from_offset, from_timestamp_ms=ts, partitions=partition,
                          wait=wait)
    print_rewound(result.topic, result.moved, "; start the router (cdx route): it routes them again; the sinks"
                                              " absorb what they already applied", NEVER_CONSUMED)


@upload_sink_app.command("replay")
@user_errors
def upload_sink_replay(
    channel: str = typer.Option(..., "--channel", "-c", help="Uploading channel id."),
    from_offset: int | None = FROM_OFFSET,
    from_timestamp: str | None = FROM_TIMESTAMP,
    partition: list[int] | None = PARTITION,
    wait: float = WAIT,
    topology: Path | None = TOPOLOGY_OPTION,
) -> None:
    """Apply a channel's upload topic at HQ again, from an offset or a time (idempotent: insert-only).

    Every HQ upload sink must be stopped (refused otherwise); the sink applies from there when started."""
    from cdx.connectors.upload.replay import replay_upload, upload_channel

    topo = load(topology)
    ts = start_timestamp(from_offset, from_timestamp)
    upload_channel(topo, channel)
    require_kafka(topo)
    result = replay_upload(topo, channel, from_offset=from_offset, from_timestamp_ms=ts, partitions=partition,
                           wait=wait)
    print_rewound(result.topic, result.moved, "; start the HQ upload sink (cdx hq upload-sink): rows already at"
                                              " HQ count as duplicates", NEVER_CONSUMED)


@capture_app.command("resnapshot")
@user_errors
def resnapshot(
    table: str = typer.Option(..., "--table", help="HQ table (dbo.INVENTTABLE) or download subjob id."),
    wait: float = typer.Option(30.0, "--wait", min=0.0, help="Seconds to wait for the capture to take the request"
                                                    " (0: do not wait)."),
    topology: Path | None = TOPOLOGY_OPTION,
) -> None:
    """Re-snapshot one HQ table: the running capture publishes all its rows again (and deletes for keys gone
    from HQ), resumable and idempotent. The request is kept in HQ until a capture takes it."""
    from cdx.cli.common import hq_database
    from cdx.connectors.capture import requests
    from cdx.streams.replay import download_subjob

    topo = load(topology)
    subjob = download_subjob(topo, table)
    require_hq(topo)
    if subjob.source_topic is not None:
        from cdx.errors import ConfigError

        raise ConfigError(f"{subjob.hq_table} is captured by another tool (source_topic {subjob.source_topic}):"
                          " re-snapshot it there")
    name = f"{subjob.hq_table.schema}.{subjob.hq_table.name}" if subjob.hq_table.schema else subjob.hq_table.name
    with hq_database(topo) as (conn, dialect):
        value = requests.request_resnapshot(conn, dialect, name)
        console.print(f"re-snapshot of {name} requested ({value})")
        deadline = time.monotonic() + wait
        while wait > 0 and time.monotonic() < deadline:
            if requests.pending(conn, dialect).get(name.casefold()) != value:
                console.print(f"the capture took it: {name} is being re-snapshotted")
                return
            time.sleep(0.5)
        if wait > 0:
            console.print(f"no capture took it within {wait:g}s: it stays requested; the capture takes it when it"
                          " runs")
