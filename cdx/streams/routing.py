"""Routing: which channel data groups receive an HQ change, and in what shape. Pure; no Kafka.

``route(topology, record) -> list[Route]`` for one record of a per-table topic:

- the record's table topic names the download subjob (``Topology.hq_table_topic``); no subjob,
  no routes. A group G is a candidate when a distribution schedule sends a job scheduling the
  subjob to G (``Topology.groups_for_subjob``);
- if the HQ table has ``DATAAREAID`` (per the record's writer schema), G receives the row only
  when the row's value is one of G's legal entities (case-insensitive). A delete whose
  ``before`` lacks DATAAREAID (it is not part of the key) goes to every candidate group, since
  the router cannot tell whose row it was. Tables without DATAAREAID go to every candidate;
- the row is projected to the channel columns (``Projection``): the HQ primary-key columns
  (key order), then DATAAREAID, then the subjob's fields in file order, each renamed to its
  channel name (``FieldMap.channel_name``). Unmapped key columns are kept, so the channel key
  is complete. Mapped columns the writer schema lacks are left out (``Projection.missing``);
- a subjob with an ``extension`` also routes every change to its extension table
  (``extension.target``): the same key columns and DATAAREAID, then the extension's fields
  (``project(..., extension=True)``). The extension table is keyed like the subjob's channel
  table (the HQ primary key under channel names), so a delete, which carries the key only,
  reaches both; an ``extension.key`` naming other columns is refused (``SchemaError``);
- for a subjob with a ``channel_filter``, every routed record of one change (own table and
  extension table) carries the HQ row's filter-column value (``filter`` in the routed value),
  so the sinks filter both tables alike, whichever of them holds the filter column;
- a delete routes as the delete plus a tombstone (``value=None``) for the same key; a source
  tombstone routes nowhere here (the router emits its own after each delete); with key state
  (``cdx.streams.stateful``, the transactional engine) it is the delete of its key.

The routed value is ``cdx.routed.make_value`` of the source envelope: ``source`` and ``ts_ms``
are copied, so routing the same record twice gives the same bytes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cdx.codec import AvroSchema, Column, columns_from_schemas
from cdx.codec.columns import check_unique_fields
from cdx.codec.errors import SchemaError
from cdx.routed import RoutedSchemas, SourcePosition, make_value, routed_schemas
from cdx.topics import group_topic
from cdx.topology import DATAAREAID, Subjob, Topology

__all__ = ["Projection", "Route", "RoutingPlan", "SourceRecord", "hq_columns", "project", "route"]

_DATAAREAID = DATAAREAID.casefold()


@dataclass(frozen=True)
class SourceRecord:
    """One decoded record of a per-table topic.

    ``key`` and ``value`` use the HQ Avro field names; ``value`` is the Debezium envelope, or
    None for a tombstone. ``columns`` are the HQ table's columns from the writer schemas
    (``hq_columns``); ``schema_id`` names them (e.g. the writer fingerprints) for caching.
    """

    topic: str
    partition: int
    offset: int
    key: Mapping[str, Any]
    value: Mapping[str, Any] | None
    columns: tuple[Column, ...]
    schema_id: Any = None

    @property
    def position(self) -> SourcePosition:
        return SourcePosition(self.topic, self.partition, self.offset)


@dataclass(frozen=True)
class Route:
    """One output record and the groups (ids, topology order) whose topics receive it.

    ``value`` None is the tombstone that follows a routed delete.
    """

    groups: tuple[str, ...]
    schemas: RoutedSchemas
    key: dict[str, Any]
    value: dict[str, Any] | None


@dataclass(frozen=True)
class Projection:
    """HQ row -> channel row for one subjob and one HQ column set.

    ``fields``/``key_fields``: ``(hq_field, channel_field)`` Avro field-name pairs;
    ``dataareaid``: the HQ field holding DATAAREAID, or None when the table has none;
    ``filter_field``: the HQ field of the subjob's channel-filter column, or None (no filter, or
    the writer schema lacks the column).
    """

    subjob: str
    schemas: RoutedSchemas
    fields: tuple[tuple[str, str], ...]
    key_fields: tuple[tuple[str, str], ...]
    dataareaid: str | None
    missing: tuple[str, ...]
    filter_field: str | None = None

    def row(self, hq_row: Mapping[str, Any]) -> dict[str, Any]:
        return {out: hq_row.get(src) for src, out in self.fields}

    def key(self, hq_row: Mapping[str, Any]) -> dict[str, Any]:
        return {out: hq_row[src] for src, out in self.key_fields}


def hq_columns(value_schema: AvroSchema | Mapping[str, Any], key_schema: AvroSchema | Mapping[str, Any]
               ) -> tuple[Column, ...]:
    """The HQ table's columns from its writer schemas: key columns first (key order), then the rest."""
    cols = columns_from_schemas(value_schema, key_schema)
    key = key_schema.to_dict() if isinstance(key_schema, AvroSchema) else key_schema
    order = {f["name"]: i for i, f in enumerate(key["fields"])}
    keys = sorted((c for c in cols if c.primary_key), key=lambda c: order[c.field])
    return tuple(keys) + tuple(c for c in cols if not c.primary_key)


def project(subjob: Subjob, columns: Sequence[Column], *, extension: bool = False) -> Projection:
    """The projection of ``subjob`` over HQ ``columns`` (see the module docstring for the order);
    with ``extension``, the projection to the subjob's extension table.

    Raises ``cdx.codec.SchemaError`` when two channel columns get the same name, or when a download
    extension's ``key`` is not the channel key.
    """
    by_name = {c.name.casefold(): c for c in columns}
    mapped = {hq.casefold(): ch for hq, ch in subjob.channel_columns()}
    out: list[tuple[Column, Column]] = []  # (hq column, channel column)
    seen: set[str] = set()

    def add(col: Column, name: str) -> None:
        if col.name.casefold() not in seen:
            seen.add(col.name.casefold())
            out.append((col, dataclasses.replace(col, name=name)))

    for col in columns:
        if col.primary_key:
            folded = col.name.casefold()
            add(col, DATAAREAID if folded == _DATAAREAID else mapped.get(folded, col.name))
    dataareaid = by_name.get(_DATAAREAID)
    if dataareaid is not None:
        add(dataareaid, DATAAREAID)
    ext = subjob.extension if extension else None
    if extension:
        if ext is None:
            raise ValueError(f"subjob {subjob.id!r} has no extension")
        _check_extension_key(subjob, [c for _, c in out if c.primary_key])
    missing: list[str] = []
    for hq, channel in (ext.channel_columns() if ext is not None else subjob.channel_columns()):
        found = by_name.get(hq.casefold())
        if found is None:
            missing.append(hq)
        elif found.name.casefold() != _DATAAREAID:
            add(found, channel)
    channel_cols = tuple(c for _, c in out)
    check_unique_fields(channel_cols)
    target = ext.target if ext is not None else subjob.target
    flt = subjob.channel_filter
    filter_col = by_name.get(flt.column.casefold()) if flt is not None else None
    return Projection(
        subjob=subjob.id,
        schemas=routed_schemas(target.schema or "", target.name, channel_cols),
        fields=tuple((h.field, c.field) for h, c in out),
        key_fields=tuple((h.field, c.field) for h, c in out if c.primary_key),
        dataareaid=dataareaid.field if dataareaid is not None else None,
        missing=tuple(missing),
        filter_field=filter_col.field if filter_col is not None else None,
    )


def _check_extension_key(subjob: Subjob, keys: Sequence[Column]) -> None:
    """A download extension table is keyed like the subjob's channel table: its ``key`` must be
    empty or name exactly those columns (DATAAREAID implied)."""
    ext = subjob.extension
    if ext is None or not ext.key:
        return
    want = {c.name.casefold() for c in keys} - {_DATAAREAID}
    if {k.casefold() for k in ext.key} != want:
        names = ", ".join(c.name for c in keys)
        raise SchemaError(
            f"subjob {subjob.id!r}: extension.key [{', '.join(ext.key)}] is not the key of its channel table "
            f"({names}); a download extension table is keyed like its channel table (every change, deletes "
            "included, carries only that key): set extension.key to [] or to those columns")


@dataclass(frozen=True)
class _TopicRule:
    subjob: Subjob
    groups: tuple[tuple[str, frozenset[str]], ...]  # (group id, casefolded legal entities)


class RoutingPlan:
    """A topology compiled for routing: per source topic its subjob and candidate groups.

    Build one per topology and reuse it; it caches projections per (subjob, ``schema_id``).
    """

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self.prefix = topology.kafka.topic_prefix
        self._rules: dict[str, _TopicRule] = {}
        for subjob in topology.download_subjobs():
            groups = tuple((g.id, frozenset(e.strip().casefold() for e in g.legal_entities))
                           for g in topology.groups_for_subjob(subjob))
            self._rules[topology.hq_table_topic(subjob)] = _TopicRule(subjob, groups)
        self.group_topics: dict[str, str] = {g.id: group_topic(self.prefix, g.id)
                                             for g in topology.channel_data_groups}
        self._projections: dict[tuple[str, Any], tuple[Projection, ...]] = {}
        self._groups_of = {topic: tuple(g for g, _ in rule.groups) for topic, rule in self._rules.items()}

    @property
    def source_topics(self) -> list[str]:
        """Per-table topics of every download subjob (sorted)."""
        return sorted(self._rules)

    def subjob_of(self, topic: str) -> Subjob | None:
        rule = self._rules.get(topic)
        return rule.subjob if rule else None

    def groups_of(self, topic: str) -> tuple[str, ...]:
        """Every group that may receive records of ``topic``."""
        return self._groups_of.get(topic, ())

    def rule_groups(self, topic: str) -> tuple[tuple[str, frozenset[str]], ...]:
        """``(group id, casefolded legal entities)`` of every group that may receive records of ``topic``."""
        rule = self._rules.get(topic)
        return rule.groups if rule else ()

    def pairs(self) -> set[tuple[str, str]]:
        """``(group id, source topic)`` for every group that may receive records of the topic."""
        return {(g, topic) for topic, rule in self._rules.items() for g, _ in rule.groups}

    def projections(self, subjob: Subjob, columns: tuple[Column, ...], schema_id: Any = None
                    ) -> tuple[Projection, ...]:
        """The projections of one HQ change: its own table, then its extension table (if any)."""
        key = (subjob.id, schema_id if schema_id is not None else columns)
        found = self._projections.get(key)
        if found is None:
            found = (project(subjob, columns),)
            if subjob.extension is not None:
                found += (project(subjob, columns, extension=True),)
            self._projections[key] = found
        return found

    def route(self, record: SourceRecord) -> list[Route]:
        rule = self._rules.get(record.topic)
        env = record.value
        if rule is None or env is None or not rule.groups:
            return []
        projections = self.projections(rule.subjob, record.columns, record.schema_id)
        main = projections[0]
        op = env["op"]
        is_delete = op == "d"
        hq_row = env["before"] if is_delete else env["after"]
        if hq_row is None:
            hq_row = record.key
        hq_row = {**record.key, **{k: v for k, v in hq_row.items() if v is not None}} if is_delete else hq_row
        groups = _select(rule.groups, main.dataareaid, hq_row, is_delete)
        if not groups:
            return []
        filtered = not is_delete and main.filter_field is not None
        flt = hq_row.get(main.filter_field) if filtered and main.filter_field else None
        routes = []
        for proj in projections:
            key = proj.key(hq_row)
            value = make_value(proj.schemas, op=op, key=key, row=None if is_delete else proj.row(hq_row),
                               source=env["source"], ts_ms=env["ts_ms"], subjob=rule.subjob.id,
                               position=record.position, filtered=filtered,
                               filter_value=None if flt is None else str(flt))
            routes.append(Route(groups, proj.schemas, key, value))
            if is_delete:
                routes.append(Route(groups, proj.schemas, key, None))
        return routes


def _select(groups: tuple[tuple[str, frozenset[str]], ...], field: str | None, row: Mapping[str, Any],
            is_delete: bool) -> tuple[str, ...]:
    if field is None:
        return tuple(g for g, _ in groups)
    value = row.get(field)
    if value is None:
        return tuple(g for g, _ in groups) if is_delete else ()
    wanted = str(value).strip().casefold()
    return tuple(g for g, entities in groups if wanted in entities)


_PLANS: dict[int, RoutingPlan] = {}


def route(topology: Topology, record: SourceRecord) -> list[Route]:
    """Route one record under ``topology`` (a ``RoutingPlan`` is built once per topology object)."""
    plan = _PLANS.get(id(topology))
    if plan is None or plan.topology is not topology:
        if len(_PLANS) > 8:
            _PLANS.clear()
        plan = _PLANS[id(topology)] = RoutingPlan(topology)
    return plan.route(record)
