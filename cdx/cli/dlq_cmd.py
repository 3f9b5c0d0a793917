"""``cdx dlq list`` and ``cdx dlq replay``: dead letters of ``<prefix>._dlq``.

``list`` shows every letter (channel sinks, router, upload) with its channel, table, key, source
position, group topic/partition/offset, error and time; for channel letters also whether it is
pending, replayed, stale (a later change of the key made it moot) or superseded (a newer letter
of the same record). ``replay`` applies pending channel letters to their databases exactly once
(see ``cdx.connectors.sink.dlq_replay``)."""

from __future__ import annotations

import json
from contextlib import closing
from pathlib import Path
from typing import Any

import typer

from cdx.cli.app import console, new_table, user_errors
from cdx.cli.common import TOPOLOGY_OPTION, load
from cdx.errors import ConfigError, FatalError

app = typer.Typer(help="Dead letters: list them, replay them once fixed.", no_args_is_help=True)


def _of_channels(letters: list[Any], channel: list[str] | None) -> list[Any]:
    """``letters`` of the channels given (all without ``channel``)."""
    wanted = {c.casefold() for c in channel or ()}
    return [x for x in letters if (x.channel or "").casefold() in wanted] if channel else letters


def _one_choice(all_: bool, offset: list[int] | None) -> None:
    if all_ == bool(offset):
        raise ConfigError("give either --all or one or more --offset N")


def _known_channels(topology: Any, channel: list[str] | None, letters: list[Any]) -> None:
    """``ConfigError`` naming the known ids when a ``--channel`` is no channel or register of ``topology``
    and no dead letter names it (letters of a channel removed from the topology can still be selected)."""
    lettered = {(x.channel or "").casefold() for x in letters}
    known = sorted(d.owner_id for d in topology.databases())
    unknown = [c for c in channel or () if c.casefold() not in lettered | {k.casefold() for k in known}]
    if unknown:
        raise ConfigError(f"no channel or offline register {', '.join(map(repr, unknown))} in the topology or"
                          f" the dead letters; known: {', '.join(known) or 'none'}")


def _markers(topology: Any, owners: set[str]) -> dict[str, tuple[str, dict[tuple[int, int], dict[str, Any]] | None]]:
    """owner id (case-folded) -> (its group topic, its replay markers, None when unreachable)."""
    from cdx.connectors.sink.letters import load_markers
    from cdx.connectors.sink.spec import sink_specs
    from cdx.dialects import get_dialect
    from cdx.dialects.reach import missing_sqlite_file

    out: dict[str, tuple[str, dict[tuple[int, int], dict[str, Any]] | None]] = {}
    for spec in sink_specs(topology):
        if spec.owner_id.casefold() not in owners:
            continue
        d = get_dialect(spec.dialect)
        if missing_sqlite_file(spec.dialect, spec.dsn) is not None:  # not created yet (not created here): no marker
            out[spec.owner_id.casefold()] = (spec.topic, {})
            continue
        try:
            with closing(d.connect(spec.dsn)) as conn:  # closed without commit: a read
                out[spec.owner_id.casefold()] = (spec.topic, load_markers(conn, d, spec.topic))
        except Exception:
            out[spec.owner_id.casefold()] = (spec.topic, None)
    return out


@app.command("list")
@user_errors
def list_(
    topology: Path | None = TOPOLOGY_OPTION,
    channel: list[str] | None = typer.Option(None, "--channel", "-c", help="Only letters of this channel or register"
                                                                           " (repeatable)."),
    limit: int = typer.Option(50, "--limit", "-n", min=0, help="Newest letters to show (0: all)."),
    pending: bool = typer.Option(False, "--pending", help="Only channel letters still to replay."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Dead letters, newest last: channel, table, key, source position, group topic/partition/offset, error."""
    from cdx.connectors.sink.letters import latest_by_origin, letter_status, read_letters
    from cdx.connectors.sink.tools import SinkTools

    topo = load(topology, kafka=True)
    tools = SinkTools(topo)
    every = read_letters(tools.config, tools.dlq_topic)
    _known_channels(topo, channel, every)
    letters = _of_channels(every, channel)
    latest = latest_by_origin(letters)
    known = {d.owner_id.casefold() for d in topo.databases()}
    markers = _markers(topo, {(x.channel or "").casefold() for x in letters if x.component == "sink"} & known)
    from cdx.connectors.upload.acks import load_acks, wants_attention

    acks = load_acks(tools.config, topo.kafka.topic_prefix) if any(
        wants_attention(x) for x in letters) else {}
    rows = []
    for x in letters:
        topic, marks = markers.get((x.channel or "").casefold(), (None, None))
        origin = x.origin
        status = letter_status(x, latest, marks if origin is not None and origin[0] == topic else None)
        if wants_attention(x):
            status = "acknowledged" if (x.dlq_partition, x.dlq_offset) in acks else "open"
        rows.append((x, status))
    if pending:
        rows = [r for r in rows if r[1] == "pending"]
    if limit > 0:
        rows = rows[-limit:]
    if as_json:
        typer.echo(json.dumps([{**x.to_json(), "status": s} for x, s in rows], indent=2, default=str))
        return
    table = new_table(f"Dead letters on {tools.dlq_topic} ({len(rows)} shown)", (
        "offset", "time (UTC)", "from", "channel", "table", "key", "source", "group topic [p]@offset", "error",
        "status"), overflow="fold")
    for x, s in rows:
        src = f"{x.source.get('topic')}[{x.source.get('partition')}]@{x.source.get('offset')}" if x.source else ""
        grp = f"{x.group_topic}[{x.partition}]@{x.offset}" if x.group_topic else ""
        key = json.dumps(x.key, default=str) if x.key is not None else ""
        colour = {"pending": "red", "open": "red", "replayed": "green", "acknowledged": "green"}.get(s)
        table.add_row(str(x.dlq_offset), (x.to_json()["time"] or "")[:23].replace("T", " "), x.component,
                      x.channel or "", x.table or "", key[:60], src, grp, x.error[:120],
                      f"[{colour}]{s}[/]" if colour else s)
    console.print(table)


@app.command("replay")
@user_errors
def replay(
    topology: Path | None = TOPOLOGY_OPTION,
    channel: list[str] | None = typer.Option(None, "--channel", "-c", help="Channel or register id (repeatable;"
                                                                           " default: all)."),
    all_: bool = typer.Option(False, "--all", help="Replay every pending letter (of the channels given)."),
    offset: list[int] | None = typer.Option(None, "--offset", help="DLQ offset of a letter to replay (repeatable;"
                                                                    " see cdx dlq list)."),
    as_json: bool = typer.Option(False, "--json", help="Print the outcomes as JSON."),
) -> None:
    """Apply dead-lettered records to their channel databases, once (a second replay is a no-op).

    A letter whose record the database still refuses is dead-lettered again with the new error
    (exit code 1); one made moot by a later change of the same key is marked stale, not applied."""
    from cdx.connectors.sink.dlq_replay import FAILED_AGAIN, DlqReplayer
    from cdx.connectors.sink.tools import SinkTools

    _one_choice(all_, offset)
    topo = load(topology, kafka=True)
    with closing(SinkTools(topo)) as tools:
        outcomes = DlqReplayer(tools).replay(channel or None, offset or None)
    if as_json:
        typer.echo(json.dumps([o.to_json() for o in outcomes], indent=2))
    else:
        if not outcomes:
            console.print("no dead letters to replay")
        for o in outcomes:
            where = f"{o.origin[0]}[{o.origin[1]}]@{o.origin[2]}" if o.origin else ""
            colour = {"applied": "green", FAILED_AGAIN: "red"}.get(o.result, "yellow")
            console.print(f"letter {o.dlq_offset} ({o.channel}, {where}): [{colour}]{o.result}[/]"
                          + (f" - {o.detail}" if o.detail else ""), soft_wrap=True)
    failed = [o for o in outcomes if o.result == FAILED_AGAIN]
    if failed:
        raise FatalError(f"{len(failed)} letter(s) refused again and dead-lettered with the new error")


@app.command("ack")
@user_errors
def ack(
    topology: Path | None = TOPOLOGY_OPTION,
    offset: list[int] | None = typer.Option(None, "--offset", help="DLQ offset of a letter to acknowledge"
                                                                    " (repeatable; see cdx dlq list)."),
    all_: bool = typer.Option(False, "--all", help="Every letter cdx status reports (skipped upload gaps,"
                                                   " changes capture could not publish) of the channels given."),
    channel: list[str] | None = typer.Option(None, "--channel", "-c", help="With --all: only this channel"
                                                                           " (repeatable)."),
    note: str = typer.Option("", "--note", help="Why (kept with the acknowledgement)."),
) -> None:
    """Acknowledge dead letters that need a person (a skipped upload gap, a change too large to capture):
    ``cdx status`` stops reporting them as errors. Idempotent; the letters stay on the topic."""
    from cdx.connectors.sink.letters import read_letters
    from cdx.connectors.sink.tools import SinkTools
    from cdx.connectors.upload.acks import acknowledge, load_acks, needs_attention

    _one_choice(all_, offset)
    topo = load(topology, kafka=True)
    tools = SinkTools(topo)
    letters = read_letters(tools.config, tools.dlq_topic)
    _known_channels(topo, channel, letters)
    if offset:
        by_offset = {x.dlq_offset: x for x in letters}
        missing = [o for o in offset if o not in by_offset]
        if missing:
            raise ConfigError(f"no dead letter at offset {missing[0]} of {tools.dlq_topic}; see cdx dlq list")
        chosen = [by_offset[o] for o in offset]
    else:
        chosen = _of_channels(needs_attention(letters, load_acks(tools.config, topo.kafka.topic_prefix)), channel)
    n = acknowledge(tools.config, topo.kafka.topic_prefix, topo.kafka.replication_factor, chosen, note)
    console.print(f"{n} dead letter(s) acknowledged" + (": " + ", ".join(str(x.dlq_offset) for x in chosen)
                                                          if chosen else ""))
