"""``cdx channel pause|resume`` and ``cdx schedule run-now``: operator controls kept in the databases.

See ``cdx.controls`` for where they are stored and ``cdx.connectors.sink.gate`` for how sinks obey them.
"""

from __future__ import annotations

from pathlib import Path

import typer

from cdx.cli.app import console, user_errors
from cdx.cli.common import TOPOLOGY_OPTION, channel_database, load, require_kafka
from cdx.errors import ConfigError

schedule_app = typer.Typer(help="Distribution schedules: windows, intervals, run now.", no_args_is_help=True)


def _set_paused(topology: Path | None, ids: list[str], paused: bool) -> None:
    from cdx import controls
    from cdx.connectors.sink.spec import sink_specs

    topo = load(topology)
    specs = sink_specs(topo, ids)  # ConfigError naming unknown ids, before anything is written
    for spec in specs:
        with channel_database(spec) as (conn, d), d.transaction(conn):
            controls.set_paused(conn, d, paused)
        word = "paused: its sink and upload stop between two batches" if paused else "resumed"
        console.print(f"{spec.owner_id}: {word}")


@user_errors
def pause(
    ids: list[str] = typer.Argument(..., metavar="ID...", help="Channel or offline-register ids."),
    topology: Path | None = TOPOLOGY_OPTION,
) -> None:
    """Stop a channel database from synchronizing: its sink applies nothing and its upload publishes
    nothing until ``cdx channel resume``; lag keeps counting (``cdx status``). Kept in the database, so
    it survives restarts; idempotent."""
    _set_paused(topology, ids, True)


@user_errors
def resume(
    ids: list[str] = typer.Argument(..., metavar="ID...", help="Channel or offline-register ids."),
    topology: Path | None = TOPOLOGY_OPTION,
) -> None:
    """Let a paused channel database synchronize again: its sink and upload catch up. Idempotent."""
    _set_paused(topology, ids, False)


@schedule_app.command("run-now")
@user_errors
def run_now(
    name: str = typer.Argument(..., help="Distribution schedule id."),
    topology: Path | None = TOPOLOGY_OPTION,
) -> None:
    """Apply what a windowed or interval schedule holds back, now, once: the sinks of its groups apply its
    records up to the group topics' current end offsets; later records wait for the schedule again."""
    from cdx import controls
    from cdx.connectors.sink.spec import sink_specs
    from cdx.connectors.sink.tools import SinkTools
    from cdx.kafka.reading import high_watermarks
    from cdx.topology.model import Direction

    topo = load(topology)
    sched = next((s for s in topo.distribution_schedules if s.id.casefold() == name.casefold()), None)
    if sched is None:
        known = ", ".join(s.id for s in topo.distribution_schedules) or "none"
        raise ConfigError(f"no distribution schedule {name!r} in the topology; known: {known}")
    if sched.direction is not Direction.DOWNLOAD:
        raise ConfigError(f"schedule {sched.id!r} is an upload schedule: uploads run continuously, nothing is held")
    groups = {g.casefold() for g in sched.channel_data_groups}
    require_kafka(topo)
    config = SinkTools(topo).config
    ends: dict[str, dict[int, int]] = {}
    specs = [s for s in sink_specs(topo) if s.group_id.casefold() in groups]
    for spec in specs:
        if spec.topic not in ends:
            ends[spec.topic] = high_watermarks(config, spec.topic)
        with channel_database(spec) as (conn, d), d.transaction(conn):
            controls.raise_release(conn, d, sched.id, ends[spec.topic])
        console.print(f"{spec.owner_id}: schedule {sched.id} released up to {controls.encode_offsets(ends[spec.topic])}"
                      f" of {spec.topic}")
    if sched.plan.continuous:
        console.print(f"schedule {sched.id} is continuous: nothing was held back")
