"""``cdx status``: roles, every channel and register database (position, lag, dead letters, last error),
uploads. A rich table, or ``--json`` for scripts. Data: ``cdx.connectors.sink.status.gather``."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from cdx.cli.app import console, new_table, user_errors
from cdx.cli.common import TOPOLOGY_OPTION, load

if TYPE_CHECKING:
    from cdx.connectors.sink.status import DatabaseStatus, Status
    from cdx.topology.rollout import Rollout


def _yes(flag: bool | None) -> str:
    return "[green]yes[/]" if flag else "[red]no[/]" if flag is False else "[yellow]?[/]"


def _ago(when: dt.datetime | None) -> str:
    if when is None:
        return ""
    secs = (dt.datetime.now(dt.UTC).replace(tzinfo=None) - when).total_seconds()
    return f"{when:%Y-%m-%d %H:%M:%S} ({_dur(secs)} ago)"


def _dur(secs: float | None) -> str:
    if secs is None:
        return ""
    if secs < 90:
        return f"{secs:.0f}s"
    if secs < 5400:
        return f"{secs / 60:.0f}m"
    if secs < 172800:
        return f"{secs / 3600:.1f}h"
    return f"{secs / 86400:.1f}d"


def _lag(d: DatabaseStatus) -> tuple[str, str]:
    if d.lag_records is None:
        return "?", "?"
    colour = "green" if d.lag_records == 0 else "yellow"
    return f"[{colour}]{d.lag_records}[/]", _dur(d.lag_seconds) if d.lag_records else "0s"


def render(st: Status) -> None:
    from rich.markup import escape

    roles = new_table(f"Roles (topic prefix {st.topic_prefix})", ("role", "name", "running", "detail"))
    for r in st.roles:
        roles.add_row(r.role, r.name, _yes(r.running), r.detail)
    if st.roles:
        console.print(roles)
    if st.rollout is not None:
        render_rollout(st.rollout)
    dbs = new_table("Channel and register databases", ("database", "kind", "reachable", "sink", "last applied (UTC)",
                                                        "stored offsets", "lag", "lag (s)", "dead letters",
                                                        "last error"))
    for d in st.databases:
        a, f = d.last_applied, d.last_failed
        offsets = " ".join(f"{p}:{o}/{d.end_offsets.get(p, '?')}" for p, o in sorted(d.stored_offsets.items()))
        lag, lag_s = _lag(d)
        dead = f"{d.dead_letters_pending if d.dead_letters_pending is not None else '?'} pending / {d.dead_letters}"
        if d.dead_letters_pending:
            dead = f"[red]{dead}[/]"
        error = d.error or (f"{f.finished_at:%Y-%m-%d %H:%M:%S}: {(f.error or '')[:80]}" if f else "")
        sink = _yes(d.sink_running) + (" [yellow]paused[/]" if d.paused else "") + "".join(
            f" [dim]{k}: {v}[/]" for k, v in d.schedules.items())
        dbs.add_row(d.owner_id, d.kind, _yes(d.reachable), sink,
                    f"{_ago(a.finished_at)} [dim]{a.kind} {a.session_id}[/]" if a else "never",
                    offsets or "-", lag, lag_s, dead, f"[red]{error}[/]" if d.error else error)
    console.print(dbs)
    if st.uploads:
        up = new_table("Uploads (channel -> HQ)", ("channel", "table", "published counter", "low watermark",
                                                   "open gaps", "received at HQ", "received (UTC)", "error"),
                       overflow="fold")
        for u in st.uploads:
            up.add_row(u.channel, u.table, *("" if v is None else str(v) for v in (
                u.published_counter, u.low_watermark, u.open_gaps, u.received_counter, u.received_at)),
                "[red]" + escape("; ".join(u.errors)) + "[/]" if u.errors else "")
        console.print(up)
    for w in st.warnings:
        console.print(f"[yellow]warning:[/] {w}", soft_wrap=True)


def render_rollout(r: Rollout) -> None:
    """The published topology revision and the revision each running role instance runs."""
    from rich.markup import escape

    colour = "green" if r.complete else "yellow"
    table = new_table(f"Topology rollout: [{colour}]{escape(r.summary())}[/]",
                      ("role", "instance", "revision", "state", "host/pid", "reported", "detail"), overflow="fold")
    for rep in r.reports:
        current = r.published is None or rep.sha256 == r.published.sha256
        revision = rep.revision if current else f"[yellow]{escape(rep.revision)}[/]"
        state = "[red]refused[/] " + escape(rep.refused) if rep.state == "refused" else rep.state
        if rep.stale():
            state = "[dim]gone (stale report)[/]"
        table.add_row(rep.role, escape(rep.instance), revision, state, f"{rep.host}/{rep.pid}",
                      _ago(dt.datetime.fromtimestamp(rep.at, dt.UTC).replace(tzinfo=None)), escape(rep.detail))
    console.print(table)


@user_errors
def status(
    topology: Path | None = TOPOLOGY_OPTION,
    channel: list[str] | None = typer.Option(None, "--channel", "-c",
                                             help="Channel or offline-register id (repeatable; default: all)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (for scripts)."),
    uploads: bool = typer.Option(True, "--uploads/--no-uploads", help="Include upload counters."),
) -> None:
    """Roles, every channel and register database (last applied, lag, dead letters, last error), uploads."""
    from cdx.connectors.sink.status import gather

    st = gather(load(topology), channel or None, include_uploads=uploads)
    if as_json:
        typer.echo(json.dumps(st.to_json(), indent=2, default=str))
        return
    render(st)
