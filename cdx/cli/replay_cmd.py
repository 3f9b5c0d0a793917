"""``cdx replay``: rewind one channel or register database and apply its group topic again from there.

See ``cdx.connectors.sink.rewind`` for what is reset and why the final state is identical."""

from __future__ import annotations

from pathlib import Path

import typer

from cdx.cli.app import user_errors
from cdx.cli.common import TOPOLOGY_OPTION, print_rewound, start_timestamp


@user_errors
def replay(
    topology: Path | None = TOPOLOGY_OPTION,
    channel: str = typer.Option(..., "--channel", "-c", help="Channel or offline-register id."),
    from_offset: int | None = typer.Option(None, "--from-offset", help="Group-topic offset to start from (every"
                                                                       " partition, or those given)."),
    from_timestamp: str | None = typer.Option(None, "--from-timestamp", help="Start at the first record written at"
                                                                             " or after this time (ISO 8601, UTC"
                                                                             " unless an offset is given; or epoch"
                                                                             " ms)."),
    from_beginning: bool = typer.Option(False, "--from-beginning", help="Start at the earliest offsets."),
    partition: list[int] | None = typer.Option(None, "--partition", "-p", help="Only this group-topic partition"
                                                                              " (repeatable)."),
    apply: bool = typer.Option(True, "--apply/--no-apply", help="Run the sink until caught up (default), or only"
                                                                 " rewind (the sink re-applies when next started)."),
    wait: float = typer.Option(0.0, "--wait", min=0.0, help="Seconds to wait for a just-stopped sink to release its"
                                                   " channel lock before refusing."),
    batch_size: int = typer.Option(5000, min=1, help="Records applied per database transaction (at most)."),
    timeout: float = typer.Option(0.0, min=0.0, help="Give up re-applying after this many seconds (0: no limit)."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Rewind a channel and re-apply its group topic from an offset, a time or the beginning.

    The sink of the channel must not be running (refused otherwise). The watermarks of the rewound
    partitions are reset, so the records are applied again as idempotent upserts/deletes: once
    caught up, the database is identical to what it was."""
    from cdx.cli.sink_cmd import run_until_caught_up, stopped_sinks
    from cdx.connectors.sink.rewind import rewind
    from cdx.connectors.sink.runner import SinkSettings

    timestamp_ms = start_timestamp(from_offset, from_timestamp, from_beginning)
    topo, tools, (spec,) = stopped_sinks(topology, [channel], wait, verbose)
    result = rewind(tools, spec, from_offset=from_offset, from_timestamp_ms=timestamp_ms,
                    from_beginning=from_beginning, partitions=partition)
    print_rewound(spec.owner_id, result.moved, f" ({result.records} offsets to apply again;"
                                                f" {result.markers_removed} dead-letter replay markers reset)")
    if apply and result.moved:
        run_until_caught_up(topo, [spec.owner_id], SinkSettings(batch_size=batch_size), timeout=timeout or None,
                            title="replay")
