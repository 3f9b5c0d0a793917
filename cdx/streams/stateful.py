"""Routing with per-key state: which groups hold each row, so moves and compacted deletes route right. Pure.

``route_stateful(plan, record, held, wanted)`` routes one source record given ``held``, the groups
that currently hold the record's key (None: the key was never routed), and ``wanted``, the groups
this pass routes for (the live stream: every group of the topic; a backfill: the groups it fills).
It returns the records to send and the key's new ``held``:

- **upsert** (``c``/``u``/``r``): the rules (``RoutingPlan.route``) give the groups T that take the
  row. Groups in ``held`` but not in T (the row's DATAAREAID moved to another legal entity) get a
  **delete** of the key (envelope ``op=d``, then a tombstone). A key never seen whose update
  (``u``) may have moved (DATAAREAID outside the primary key) sends that delete to every
  wanted group outside T, since the router cannot know where the row was;
- **delete** (``d``): sent to the groups in ``held`` (the rule's groups when the key was never seen);
- **tombstone** (null value): the delete of its key. After a delete it routes nothing (no group
  holds the key any more); when compaction removed the delete before it, it sends the groups in
  ``held`` a tombstone that carries its own source position (``cdx.routed.tombstone_headers``).

Only bits of ``wanted`` groups change in ``held``: a pass never touches what other groups hold.
After an upsert ``held`` is a set, possibly empty (seen, held by no group: its updates send no
deletes); after a delete or tombstone that leaves no group, None (the key is forgotten).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from cdx.streams.routing import Route, RoutingPlan, SourceRecord
from cdx.topology import DATAAREAID

_DATAAREAID = DATAAREAID.casefold()
_SYNTHETIC_SOURCE: dict[str, Any] = {}


@dataclass(frozen=True)
class Emit:
    """One routed record (``route.value`` None: a tombstone) for these groups."""

    route: Route
    groups: tuple[str, ...]


def may_move(record: SourceRecord) -> bool:
    """True when the table's DATAAREAID is not part of its key: an update can move the row between groups."""
    return any(c.name.casefold() == _DATAAREAID and not c.primary_key for c in record.columns)


def _delete_routes(plan: RoutingPlan, record: SourceRecord, op_source: Any) -> list[Route]:
    """The delete (and tombstone) routes of the record's key, with the record's source and position."""
    env = record.value or {}
    delete = {"op": "d", "before": dict(record.key), "after": None,
              "source": env.get("source", op_source), "ts_ms": env.get("ts_ms", 0)}
    return plan.route(SourceRecord(record.topic, record.partition, record.offset, record.key, delete,
                                   record.columns, record.schema_id))


def route_stateful(plan: RoutingPlan, record: SourceRecord, held: frozenset[str] | None,
                   wanted: Collection[str]) -> tuple[list[Emit], frozenset[str] | None]:
    """See the module docstring. ``held`` None and a None result both mean "no state for this key"."""
    env = record.value
    before = held or frozenset()
    kept = frozenset(g for g in before if g not in wanted)
    if env is None:
        holders = tuple(g for g in plan.groups_of(record.topic) if g in before and g in wanted)
        if not holders:
            return [], kept or None
        routes = [r for r in _delete_routes(plan, record, _SYNTHETIC_SOURCE) if r.value is None]
        return [Emit(r, holders) for r in routes], kept or None
    routes = plan.route(record)
    if env["op"] == "d":
        if held is None:
            deletes = [Emit(r, tuple(g for g in r.groups if g in wanted)) for r in routes]
        else:
            deletes = [Emit(r, tuple(g for g in plan.groups_of(record.topic) if g in before and g in wanted))
                       for r in routes]
        return [e for e in deletes if e.groups], kept or None
    takes = frozenset(g for r in routes for g in r.groups if g in wanted)
    if held is None:
        gone: frozenset[str] = frozenset()
        if env["op"] == "u" and may_move(record):
            gone = frozenset(g for g in plan.groups_of(record.topic) if g in wanted) - takes
    else:
        gone = frozenset(g for g in before if g in wanted) - takes
    emits: list[Emit] = []
    if gone:
        order = tuple(g for g in plan.groups_of(record.topic) if g in gone)
        emits += [Emit(r, order) for r in _delete_routes(plan, record, env.get("source"))]
    emits += [Emit(r, tuple(g for g in r.groups if g in takes)) for r in routes]
    return [e for e in emits if e.groups], kept | takes
