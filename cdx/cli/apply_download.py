"""Download-side steps of ``cdx topology apply`` (a builder of ``cdx.cli.apply_steps``).

Most of a download change is done by the roles when they take the published revision: the router
re-routes the affected tables from their compacted topics (``cdx.streams.reroute``: new columns filled,
rows moved in and out of groups), the sinks add columns and resync under changed row filters
(``cdx.connectors.sink.respec``), capture snapshots a new table. Apply does two things for them:

- **checks, before anything runs**: every HQ column a new download field (or extension field)
  names exists in its HQ table, since a field the table lacks would never reach the channels
  (``ConfigError``: the apply stops, nothing applied);
- one **step per change** that says what the roles will do (``cdx topology diff``'s action); its
  run does nothing itself and says who does it, so the printout of ``apply`` (and ``--dry-run``)
  lists the whole change, and ``cdx status`` shows when every role runs the revision.

Caveat printed with a new field: the re-route fills the column from what the table topic holds; a
column added to the HQ table *after* its rows were captured is only in records captured since (rows
unchanged since then stay NULL until they change or the table is snapshotted again).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from cdx.errors import ConfigError
from cdx.topology.diff import REROUTE, Change
from cdx.topology.model import Subjob
from cdx.topology.root import Topology

_ROLES = ("schema", "groups", "routing", "channels", "tables")


def _new_fields(before: Topology, after: Topology) -> dict[str, tuple[Subjob, list[str]]]:
    """HQ columns each download subjob of ``after`` maps that it did not map in ``before`` (by subjob id)."""
    out: dict[str, tuple[Subjob, list[str]]] = {}
    for s in after.download_subjobs():
        if s.source_topic is not None:
            continue
        prev = before.subjob(s.id)
        old = {f.name.casefold() for f in prev.all_fields()} if prev is not None else set()
        new = [f.name for f in s.all_fields() if f.name.casefold() not in old]
        if new:
            out[s.id] = (s, new)
    return out


def check_hq_columns(topology: Topology, fields: dict[str, tuple[Subjob, list[str]]]) -> None:
    """``ConfigError`` naming every new field whose HQ table lacks the column (or lacks the table)."""
    from cdx.cli.common import hq_database

    if not fields:
        return
    problems = []
    with hq_database(topology) as (conn, d), d.transaction(conn):
        for subjob, names in fields.values():
            t = subjob.hq_table
            try:
                have = {c.name.casefold() for c in d.introspect_columns(conn, t.schema, t.name)}
            except ConfigError as exc:
                problems.append(f"subjob {subjob.id!r}: {exc}")
                continue
            missing = [n for n in names if n.casefold() not in have]
            if missing:
                problems.append(f"subjob {subjob.id!r}: {t} has no column {', '.join(missing)}")
    if problems:
        raise ConfigError("new download fields name HQ columns that do not exist, nothing was applied: "
                          + "; ".join(problems) + " (add the columns at HQ first, or fix the field names)")


def download_changes(before: Topology | None, after: Topology, changes: Iterable[Change]
                     ) -> Iterable[tuple[str, Callable[[], str | None]]]:
    """``(description, run)`` of each download-side step (``cdx.cli.apply_steps.download_steps`` makes them
    ``Step`` s). Raises ``ConfigError`` while building (see the module docstring)."""
    if before is None:
        return
    check_hq_columns(after, _new_fields(before, after))
    for change in changes:
        if change.category not in _ROLES or not _download(change.action):
            continue
        note = ""
        if REROUTE in change.action and "field" in change.summary and "added" in change.summary:
            note = (" (filled from the table topic: a column added at HQ after its rows were captured is in records"
                    " captured since)")
        yield f"download: {change.summary} -> {change.action}{note}", _by_roles


def _download(action: str) -> bool:
    return any(w in action for w in (REROUTE, "resyncs", "the router routes", "capture snapshots"))


def _by_roles() -> str:
    return "done by the router and the sinks when they take the revision (watch `cdx status`)"
