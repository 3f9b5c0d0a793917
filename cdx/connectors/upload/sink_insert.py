"""Insert-only writes of the HQ upload sink, in the caller's HQ transaction.

A row whose (origin channel, counter) is already at HQ (column ``CDXORIGINID``, when the HQ table has
it) or whose primary key is already there is counted as a duplicate and left untouched, never
updated nor inserted twice. Identifiers are quoted by the dialect, values bound.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cdx.connectors.upload.sink_catalog import HqTable
from cdx.connectors.upload.sink_decode import Item
from cdx.connectors.upload.source import typed_errors
from cdx.dialects import Connection, Dialect


@dataclass
class Group:
    """The items of one batch for one (channel, upload subjob): one upload session."""

    channel: str
    table: HqTable
    topic: str
    partition: int
    items: list[Item] = field(default_factory=list)
    first_offset: int = -1
    last_offset: int = -1
    inserted: int = 0
    duplicates: int = 0


def group_items(items: Sequence[Item]) -> list[Group]:
    """``items`` by (channel, subjob), in first-seen order."""
    groups: dict[tuple[str, str], Group] = {}
    for it in items:
        offset = it.msg.offset() or 0
        g = groups.get((it.channel, it.table.subjob.id))
        if g is None:
            g = groups[(it.channel, it.table.subjob.id)] = Group(it.channel, it.table, it.msg.topic() or "",
                                                                 it.msg.partition() or 0, first_offset=offset)
        g.items.append(it)
        g.last_offset = offset
    return list(groups.values())


def existing_counters(d: Dialect, conn: Connection, groups: Sequence[Group]) -> dict[str, set[int]]:
    """Counters of the groups' (one HQ table's) rows already at HQ, by channel: one query."""
    t = groups[0].table
    if t.origin is None:
        return {}
    p = d.placeholder
    origin, counter = d.quote_ident(t.origin), d.quote_ident(t.counter)
    where, params = [], []
    for g in groups:
        if g.items:
            where.append(f"({origin} = {p} AND {counter} BETWEEN {p} AND {p})")
            params += [g.channel, min(i.counter for i in g.items), max(i.counter for i in g.items)]
    if not where:
        return {}
    cur = conn.cursor()
    cur.execute(f"SELECT {origin}, {counter} FROM {d.qualified(t.ref.schema, t.ref.name)} WHERE "
                + " OR ".join(where), params)
    out: dict[str, set[int]] = {}
    for o, c in cur.fetchall():
        out.setdefault(str(o), set()).add(int(c))
    return out


def insert_rows(d: Dialect, conn: Connection, t: HqTable, items: Sequence[Item]) -> int:
    """insert_ignore_existing of ``items`` (grouped by column set); returns the count inserted."""
    by_columns: dict[tuple[str, ...], list[list[Any]]] = {}
    for it in items:
        cols = tuple(it.values)
        by_columns.setdefault(cols, []).append([it.values[c] for c in cols])
    inserted = 0
    for cols, rows in by_columns.items():
        with typed_errors(d, f"inserting into {t.name}"):
            inserted += d.insert_ignore_existing(conn, t.ref.schema, t.ref.name, list(cols), t.key, rows)
    return inserted


def _fresh(groups: Sequence[Group], known: dict[str, set[int]]) -> dict[int, list[Item]]:
    """Per group (by ``id``): its items not at HQ yet, each counter once."""
    fresh: dict[int, list[Item]] = {}
    for g in groups:
        have, seen, new = known.get(g.channel, set()), set(), []
        for it in g.items:
            if it.counter not in have and it.counter not in seen:
                seen.add(it.counter)
                new.append(it)
        fresh[id(g)] = new
    return fresh


def insert_groups(d: Dialect, conn: Connection, groups: Sequence[Group]) -> None:
    """Insert every group's new rows; sets each group's inserted and duplicate counts.

    Per HQ table: rows whose (channel, counter) is at HQ already are duplicates (one query); the
    rest of all channels go in one bulk insert inside a savepoint. If the database inserted fewer
    (some primary keys existed: counted per channel only by inserting per channel), the
    savepoint is rolled back and the channels are inserted one by one.
    """
    by_table: dict[str, list[Group]] = {}
    for g in groups:
        by_table.setdefault(g.table.name, []).append(g)
    savepoints = d.name in ("postgresql", "sqlite")
    for gs in by_table.values():
        t = gs[0].table
        fresh = _fresh(gs, existing_counters(d, conn, gs))
        total = sum(len(v) for v in fresh.values())
        if savepoints and len(gs) > 1:
            conn.execute("SAVEPOINT cdx_upload")
            if insert_rows(d, conn, t, [it for g in gs for it in fresh[id(g)]]) == total:
                conn.execute("RELEASE SAVEPOINT cdx_upload")
                for g in gs:
                    g.inserted, g.duplicates = len(fresh[id(g)]), len(g.items) - len(fresh[id(g)])
                continue
            conn.execute("ROLLBACK TO SAVEPOINT cdx_upload")
        for g in gs:
            g.inserted = insert_rows(d, conn, t, fresh[id(g)])
            g.duplicates = len(g.items) - g.inserted
