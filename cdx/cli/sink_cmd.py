"""``cdx sink`` (run channel sinks), ``cdx channel init`` (create channel tables), ``cdx channel bootstrap``
(run sinks until caught up), ``cdx channel resync`` (rebuild from the group topic) and ``cdx channel
sessions`` (download-session history)."""

from __future__ import annotations

import json
import time
from contextlib import closing, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from cdx.cli.app import console, new_table, user_errors
from cdx.cli.common import (
    METRICS_PORT_OPTION,
    TOPOLOGY_OPTION,
    channel_database,
    live_topology,
    load,
    require_kafka,
    run_role,
    setup_logging,
)
from cdx.errors import FatalError
from cdx.stage.signals import stop_on_signals

if TYPE_CHECKING:
    from cdx.connectors.sink.bootstrap import CatchUp, SinkProgress
    from cdx.connectors.sink.host import SinkHost
    from cdx.connectors.sink.runner import SinkSettings
    from cdx.connectors.sink.spec import SinkSpec
    from cdx.connectors.sink.tools import SinkTools
    from cdx.topology.root import Topology

channel_app = typer.Typer(help="Channel and offline-register databases.", no_args_is_help=True)

CHANNEL_OPTION = typer.Option(None, "--channel", "-c",
                              help="Channel or offline-register id (repeatable; default: all).")
BATCH_OPTION = typer.Option(5000, help="Records applied per database transaction (at most).")
RETENTION_OPTION = typer.Option(14.0, help="Days of download sessions kept in each database (0: by count only).")
MAX_SESSIONS_OPTION = typer.Option(50_000, help="Download sessions kept per database at most (0: no limit).")
WAIT_OPTION = typer.Option(0.0, "--wait", min=0.0, help="Seconds to wait for a just-stopped sink to release its"
                                                        " channel lock (a killed sink's SQLite lease: up to 30 s)"
                                                        " before refusing.")


def show_progress(catch: CatchUp, *, timeout: float | None = None, title: str = "bootstrap") -> bool:
    """Until every sink of ``catch`` caught up or stopped (or ``timeout``): a rich progress bar of
    records applied / group-topic end offsets on a terminal, nothing otherwise. True if done."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    deadline = None if not timeout else time.monotonic() + timeout
    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[state]}"), TimeElapsedColumn(), console=console, transient=False
                   ) if console.is_terminal else None
    with bar if bar is not None else nullcontext():
        tasks = {p.owner_id: bar.add_task(f"{title} {p.owner_id}", total=max(p.total, 1), state=p.status)
                 for p in catch.progress()} if bar is not None else {}
        while True:
            progress = catch.progress()
            for p in progress:
                state = "caught up" if p.caught_up else p.status if p.status != "running" else ""
                if bar is not None:
                    bar.update(tasks[p.owner_id], completed=p.total if p.caught_up else p.applied,
                               total=max(p.total, 1), state=state)
            if all(p.caught_up or p.status in ("failed", "stopped") for p in progress):  # as CatchUp.done
                return True
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.2)


def _summary(progress: list[SinkProgress]) -> None:
    for p in progress:
        state = "caught up" if p.caught_up else p.status
        console.print(f"{p.owner_id}: {state}, {p.applied}/{p.total} offsets applied"
                      + (f" ({p.error})" if p.error and not p.caught_up else ""))


def _failures(host: SinkHost) -> str:
    return "; ".join(f"{s.name}: {s.last_error}" for s in host.failed())


def run_until_caught_up(topology: Topology, owner_ids: list[str] | None, settings: SinkSettings, *,
                        timeout: float | None = None, title: str = "bootstrap") -> list[SinkProgress]:
    """Run the sinks of ``owner_ids`` until they reach the group topics' current end offsets, then stop
    them. Raises ``FatalError`` when one fails or the timeout passes.

    These one-shot sinks join their consumer groups as dynamic members, so they leave them at once
    when done (a service sink started right after is not refused, ``cdx status`` is not misled)."""
    import dataclasses

    from cdx.connectors.sink.bootstrap import CatchUp
    from cdx.connectors.sink.host import SinkHost

    host = SinkHost(topology, owner_ids, dataclasses.replace(settings, stand_by=False, controls=False))
    with stop_on_signals(host.stop):  # the previous handlers are back once the sinks ended
        host.setup()
        catch = CatchUp(host)
        host.start()
        try:
            finished = show_progress(catch, timeout=timeout, title=title)
        finally:
            host.stop()
            ok = host.wait()
    progress = catch.progress()
    _summary(progress)
    if not ok:
        raise FatalError(_failures(host) or "a sink failed")
    if not finished:
        raise FatalError(f"not caught up within {timeout:.0f}s")
    lagging = [p.owner_id for p in progress if not p.caught_up]
    if lagging:
        raise FatalError(f"stopped before catching up: {', '.join(lagging)}")
    return progress


@user_errors
def sink(
    topology: Path | None = TOPOLOGY_OPTION,
    channel: list[str] | None = CHANNEL_OPTION,
    batch_size: int = BATCH_OPTION,
    session_retention_days: float = RETENTION_OPTION,
    max_sessions: int = MAX_SESSIONS_OPTION,
    metrics_port: int | None = METRICS_PORT_OPTION,
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Apply group topics to channel databases, exactly once (runs until SIGTERM).

    On a terminal, a progress bar shows each database catching up with its group topic first
    (a new database bootstraps from the beginning of the topic)."""
    from cdx.connectors.sink.host import SinkHost
    from cdx.connectors.sink.runner import SinkSettings
    from cdx.connectors.sink.spec import sink_specs

    setup_logging(verbose)
    live = live_topology(topology, "sink", serves=lambda t: [s.owner_id for s in sink_specs(t, channel or None)])
    host = SinkHost(live.current, channel or None, SinkSettings(
        batch_size=batch_size, session_retention_days=session_retention_days, session_max_rows=max_sessions))
    owners = [s.owner_id for s in host.specs]
    run_role(live, host, owners, "sink", metrics_port, run=lambda: _serve(host), started=lambda: (
        f"sinking {len(owners)} database{'s' if len(owners) != 1 else ''}: " + ", ".join(owners)))


def _serve(host: SinkHost) -> None:
    from cdx.connectors.sink.bootstrap import CatchUp

    host.start()
    if console.is_terminal:
        catch = CatchUp(host)
        if not catch.done():
            show_progress(catch, title="catching up")
    if not host.wait():
        raise FatalError(f"sink stopped with errors: {_failures(host)}")


def stopped_sinks(topology: Path | None, channel: list[str], wait: float, verbose: bool
                  ) -> tuple[Topology, SinkTools, list[SinkSpec]]:
    """For a one-shot command on the databases ``channel``: the topology, sink tools and their specs once no
    sink serves them (``ensure_sink_stopped``, waiting up to ``wait`` seconds). An unknown id is bad input,
    said before Kafka is asked."""
    from cdx.connectors.sink.rewind import ensure_sink_stopped
    from cdx.connectors.sink.spec import sink_specs
    from cdx.connectors.sink.tools import SinkTools

    if verbose:
        setup_logging(True)
    topo = load(topology)
    specs = sink_specs(topo, channel)
    require_kafka(topo)
    tools = SinkTools(topo)
    for spec in specs:
        ensure_sink_stopped(tools, spec, wait)
    return topo, tools, specs


@channel_app.command("init")
@user_errors
def init(
    topology: Path | None = TOPOLOGY_OPTION,
    channel: list[str] | None = CHANNEL_OPTION,
) -> None:
    """Create the state table and the channel tables (types from the routed Avro schemas)."""
    from cdx.connectors.sink.init import init_databases
    from cdx.connectors.sink.spec import sink_specs

    topo = load(topology)
    sink_specs(topo, channel or None)  # an unknown id is bad input: said before Kafka is asked
    require_kafka(topo)
    for r in init_databases(topo, channel or None):
        console.print(f"[bold]{r.owner_id}[/] ({r.database}): {len(r.created)} created, {len(r.existing)} existing,"
                      f" {len(r.added_columns)} columns added, {len(r.pending)} pending")
        for what, names in (("created", r.created), ("added", r.added_columns), ("pending (no records yet)",
                                                                                   r.pending)):
            if names:
                console.print(f"  {what}: {', '.join(names)}", soft_wrap=True)


@user_errors
def bootstrap(
    topology: Path | None = TOPOLOGY_OPTION,
    channel: list[str] = typer.Option(..., "--channel", "-c", help="Channel or offline-register id (repeatable)."),
    batch_size: int = typer.Option(20_000, min=1, help="Records applied per database transaction (at most)."),
    timeout: float = typer.Option(0.0, min=0.0, help="Give up after this many seconds (0: no limit)."),
    wait: float = WAIT_OPTION,
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Fill new channel or register databases with the full current state of their group topic, then exit.

    Runs the sinks of the given databases from their stored position (the beginning of the compacted
    group topic for a new database) until they reach the topic's end offsets as seen at the start,
    with a progress bar on a terminal. Refuses while a sink already serves one of them."""
    from cdx.connectors.sink.bootstrap import bootstrap_settings, bulk_gc
    from cdx.connectors.sink.init import init_databases

    topo, _, _ = stopped_sinks(topology, channel, wait, verbose)
    init_databases(topo, channel)
    with bulk_gc():
        run_until_caught_up(topo, channel, bootstrap_settings(batch_size), timeout=timeout or None)


@channel_app.command("resync")
@user_errors
def resync(
    topology: Path | None = TOPOLOGY_OPTION,
    channel: list[str] = typer.Option(..., "--channel", "-c", help="Channel or offline-register id (repeatable)."),
    wait: float = WAIT_OPTION,
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Rebuild databases from their group topic now: apply its compacted state and delete every row
    not in it (sinks do this by themselves when they detect missed deletes). The sinks must be stopped."""
    from cdx.connectors.sink.lock import take_or_refuse
    from cdx.connectors.sink.records import Decoder, Record
    from cdx.connectors.sink.resync import Resync
    from cdx.connectors.sink.sessions import SessionLog
    from cdx.connectors.sink.state import StateStore
    from cdx.connectors.sink.tables import TableManager

    _, tools, specs = stopped_sinks(topology, channel, wait, verbose)
    with closing(tools):
        for spec in specs:
            with channel_database(spec) as (conn, d):
                store, sessions = StateStore(d, spec.topic), SessionLog(d, spec.owner_id)
                with d.transaction(conn):
                    store.ensure(conn)
                    sessions.ensure(conn)
                lock = take_or_refuse(d, conn, spec.consumer_group, spec.owner_id, "cdx channel resync")

                def dead_letter(rec: Record, why: str, spec: SinkSpec = spec) -> None:
                    tools.dead_letters.send(spec.owner_id, spec.kind, spec.topic, rec, why)

                tables = TableManager(d, spec.extension_schemas)
                report = Resync(conn, d, spec, store, tables, Decoder(tools.codec, spec.topic), tools.config,
                                dead_letter, sessions, guard=lock.confirm).run("requested with cdx channel resync")
                lock.release(conn)
            console.print(f"[bold]{spec.owner_id}[/]: {report.records} records read, {report.live_rows} live rows,"
                          f" {report.upserted} upserted, {report.removed} removed, {report.refused} refused"
                          f" (dead-lettered), offsets now {report.ends}")


@channel_app.command("sessions")
@user_errors
def sessions_(
    topology: Path | None = TOPOLOGY_OPTION,
    channel: str = typer.Option(..., "--channel", "-c", help="Channel or offline-register id."),
    limit: int = typer.Option(20, "--limit", "-n", min=1, help="Newest sessions to show."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """The download-session history of one database, newest first."""
    from cdx.connectors.sink import sessions as hist
    from cdx.connectors.sink.spec import sink_specs
    from cdx.connectors.sink.tools import database_of
    from cdx.dialects.reach import require_existing

    (spec,) = sink_specs(load(topology), [channel])
    require_existing(spec.dialect, spec.dsn, database_of(spec), "run cdx channel init or fix its dsn")
    with channel_database(spec) as (conn, d):
        rows = hist.recent(conn, d, spec.owner_id, limit)
    if as_json:
        typer.echo(json.dumps([s.to_json() for s in rows], indent=2, default=str))
        return
    table = new_table(f"Download sessions of {spec.owner_id} (newest first)", (
        "finished (UTC)", "kind", "status", "records", "upserted", "deleted", "filtered", "duplicates", "dead",
        "offsets", "tables", "error / detail"))
    for s in rows:
        offsets = " ".join(f"{p}:{a}-{b}" for p, (a, b) in sorted(s.offsets.items()))
        table.add_row(f"{s.finished_at:%Y-%m-%d %H:%M:%S}" if s.finished_at else "", s.kind,
                      s.status if s.status != "Failed" else "[red]Failed[/]", str(s.records), str(s.rows_upserted),
                      str(s.rows_deleted), str(s.rows_filtered), str(s.duplicates), str(s.dead_lettered), offsets,
                      s.tables, (s.error or s.detail or "")[:100])
    console.print(table)
