"""Turning consumed records into what one database transaction must do (pure; no I/O).

``plan_batch(records, state, spec)`` walks the records in consumption order (each partition in
offset order) and:

- skips tombstones without routing headers but counts their offsets; a routed tombstone is the
  delete of its key at its source position: right after its delete the watermark covers it (not
  counted as a duplicate); alone (compaction removed the delete) it is applied as a delete;
- skips **re-sends**: a change whose source offset the watermark of (group partition, source
  topic, source partition) already covers (a lower offset, or that offset for a target already applied);
- applies **re-routed** records (header ``cdx.reroute``: the router routed the table again after a
  topology change, ``cdx.streams.reroute``) although the live watermark covers their source offsets:
  they are new content (a new column, a row that moved in or out) at an old position. They are
  checked against, and advance, a watermark of their own (``reroute_key``) that counts one re-route
  (``Watermark.gen``): a re-route's record seen twice is skipped, a newer re-route starts afresh.
  Everything the router sends one group for a key is in source order (first routes, their
  re-routes, then the live stream), so applying re-routed records as they come ends with the
  newest row; the live watermark is neither checked nor moved by them;
- applies the channel's **row filter**: an upsert whose filter value is not the channel's value
  becomes a delete of that key, because the row may have moved away from this channel (its
  filter column changed at HQ) and must not linger here. The filter value is the one the router
  sent with the change (``RoutedChange.filter_value``, the same for a table and its extension
  table); a record routed without one (an older router) is filtered on its own filter column,
  and not at all when it lacks that column;
- **collapses** per (table, key) to the last change, so each table gets one set of upserts and one
  set of deletes with distinct keys;
- moves each partition's next offset past its last record and advances the watermarks, also for
  records dead-lettered (``poison``) or undecodable, so none of them is ever applied or
  dead-lettered again after a commit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cdx.connectors.sink.records import Record, Shape
from cdx.connectors.sink.spec import FilterRule, SinkSpec
from cdx.connectors.sink.state import SinkState, Watermark, reroute_key, watermark_key
from cdx.routed import RoutedChange, SourcePosition


@dataclass
class TableBatch:
    """The net changes of one table: key -> (shape, row) for upserts, (shape, None) for deletes."""

    schema: str
    table: str
    shapes: dict[tuple[str, ...], Shape] = field(default_factory=dict)
    changes: dict[tuple[Any, ...], tuple[Shape, tuple[Any, ...] | None]] = field(default_factory=dict)

    def upserts(self) -> dict[tuple[str, ...], list[tuple[Any, ...]]]:
        """Upsert rows grouped by column list (older writer schemas may lack newer columns)."""
        out: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
        for shape, row in self.changes.values():
            if row is not None:
                out.setdefault(shape.names, []).append(row)
        return out

    def deletes(self) -> list[tuple[Any, ...]]:
        return [k for k, (_, row) in self.changes.items() if row is None]

    @property
    def key_names(self) -> tuple[str, ...]:
        return next(iter(self.shapes.values())).key_names


@dataclass
class Plan:
    tables: dict[tuple[str, str], TableBatch] = field(default_factory=dict)
    offsets: dict[int, int] = field(default_factory=dict)
    watermarks: dict[str, Watermark] = field(default_factory=dict)
    dead: list[tuple[Record, str]] = field(default_factory=list)
    """Records to dead-letter, with the reason."""
    applied: int = 0
    duplicates: int = 0
    filtered: int = 0

    def ordered(self, spec: SinkSpec) -> list[TableBatch]:
        """Tables parents first (topology declaration order)."""
        return sorted(self.tables.values(), key=lambda t: spec.rank(t.schema, t.table))


def plan_batch(records: list[Record], state: SinkState, spec: SinkSpec, poison: str | None = None) -> Plan:
    """The plan for ``records`` against ``state`` (read in the same transaction).

    With ``poison`` (a database error), every change that is not a re-send is dead-lettered with
    that reason instead of applied (used for a single record isolated by the caller).

    Per record only look-ups and comparisons (a bootstrap plans millions): watermark keys, subjob
    rules and table batches are looked up once per batch, watermarks advance in place (``_Marks``).
    """
    plan = Plan()
    offsets = plan.offsets
    marks = _Marks(state)
    rules: dict[str, tuple[bool, FilterRule | None]] = {}
    batches: dict[Shape, TableBatch] = {}
    applied = duplicates = filtered = 0
    for rec in records:
        offsets[rec.partition] = rec.offset + 1
        change, shape = rec.change, rec.shape
        if change is None or shape is None:
            if rec.error is not None:
                plan.dead.append((rec, rec.error))
            continue
        repeat = marks.advance(rec, change.position, shape.target)
        if repeat is not None:
            duplicates += repeat
            continue
        if poison is not None:
            plan.dead.append((rec, poison))
            continue
        rule = rules.get(change.subjob)
        if rule is None:
            rule = rules[change.subjob] = (spec.excludes(change.subjob), spec.filter_for(change.subjob))
        if rule[0]:  # offline: false on an offline register
            filtered += 1
            continue
        try:
            key = rec.key_values if rec.key_values is not None else shape.key_values(change.key)
            row = None if change.is_delete or change.row is None else \
                rec.row_values if rec.row_values is not None else shape.row_values(change.row)
        except (KeyError, TypeError, ValueError) as e:
            plan.dead.append((rec, f"malformed change: {type(e).__name__}: {e}"))
            continue
        if row is not None and rule[1] is not None and not _passes(rule[1], change, shape):
            row = None
            filtered += 1
            applied -= 1
        tb = batches.get(shape) or _table_batch(plan, batches, shape)
        if key in tb.changes:
            del tb.changes[key]  # keep dict order = order of last change (informational)
        tb.changes[key] = (shape, row)
        applied += 1
    plan.applied, plan.duplicates, plan.filtered = applied, duplicates, filtered
    plan.watermarks = marks.changed()
    return plan


def _table_batch(plan: Plan, batches: dict[Shape, TableBatch], shape: Shape) -> TableBatch:
    tb = plan.tables.get((shape.schema, shape.table))
    if tb is None:
        tb = plan.tables[(shape.schema, shape.table)] = TableBatch(shape.schema, shape.table)
    tb.shapes.setdefault(shape.names, shape)
    batches[shape] = tb
    return tb


class _Mark:
    """One watermark while a batch is planned (mutable); ``stored``: the state's, while unchanged."""

    __slots__ = ("gen", "offset", "stored", "targets")

    def __init__(self, offset: int, targets: set[str], gen: str, stored: Watermark | None = None) -> None:
        self.offset, self.targets, self.gen, self.stored = offset, targets, gen, stored


class _Marks:
    """The watermarks of one batch: the state's, advanced record by record (see the module docstring)."""

    def __init__(self, state: SinkState) -> None:
        self.state = state
        self.marks: dict[str, _Mark] = {}
        self.keys: dict[tuple[str, int, str, int], str] = {}

    def advance(self, rec: Record, pos: SourcePosition, target: str) -> int | None:
        """None: a new change (its watermark advanced past it); else a re-send the watermark covers, and
        how many duplicates it counts (0: a routed tombstone right after its delete)."""
        gen = rec.reroute or ""
        wid = (gen, rec.partition, pos.topic, pos.partition)
        wkey = self.keys.get(wid)
        if wkey is None:
            wkey = self.keys[wid] = (reroute_key if gen else watermark_key)(rec.partition, pos.topic, pos.partition)
        mark = self.marks.get(wkey)
        if mark is None and (stored := self.state.watermarks.get(wkey)) is not None:
            mark = self.marks[wkey] = _Mark(stored.offset, set(stored.targets), stored.gen, stored)
        offset = pos.offset
        if mark is None or mark.gen != gen:  # none yet, or a newer re-route: new whatever the source offset
            self.marks[wkey] = _Mark(offset, {target}, gen)
        elif offset < mark.offset or (offset == mark.offset and target in mark.targets):
            return 0 if rec.tombstone and offset == mark.offset else 1
        elif offset > mark.offset:
            mark.offset, mark.targets, mark.stored = offset, {target}, None
        else:
            mark.targets.add(target)
            mark.stored = None
        return None

    def changed(self) -> dict[str, Watermark]:
        """The watermarks this batch advanced."""
        return {k: Watermark(m.offset, frozenset(m.targets), m.gen) for k, m in self.marks.items() if m.stored is None}


def _passes(rule: FilterRule, change: RoutedChange, shape: Shape) -> bool:
    """Whether an upsert belongs to this channel under its row filter (see the module docstring)."""
    if change.filtered:
        return change.filter_value is not None and change.filter_value == rule.value
    fld = shape.by_casefold.get(rule.column.casefold())
    return fld is None or change.row is None or str(change.row.get(fld)) == rule.value
