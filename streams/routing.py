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
- a delete routes as the delete plus a tombstone (``value=None``) for the same key; a source
  tombstone routes nowhere (the router emits its own after each delete).

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
    ``dataareaid``: the HQ field holding DATAAREAID, or None when the table has none.
    """

    subjob: str
    schemas: RoutedSchemas
    fields: tuple[tuple[str, str], ...]
    key_fields: tuple[tuple[str, str], ...]
    dataareaid: str | None
    missing: tuple[str, ...]

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


def project(subjob: Subjob, columns: Sequence[Column]) -> Projection:
    """The projection of ``subjob`` over HQ ``columns`` (see the module docstring for the order).

    Raises ``cdx.codec.SchemaError`` when two channel columns get the same name.
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
    missing: list[str] = []
    for hq, channel in subjob.channel_columns():
        found = by_name.get(hq.casefold())
        if found is None:
            missing.append(hq)
        elif found.name.casefold() != _DATAAREAID:
            add(found, channel)
    channel_cols = tuple(c for _, c in out)
    check_unique_fields(channel_cols)
    target = subjob.target
    schemas = routed_schemas(target.schema or "", target.name, channel_cols)
    return Projection(
        subjob=subjob.id,
        schemas=schemas,
        fields=tuple((h.field, c.field) for h, c in out),
        key_fields=tuple((h.field, c.field) for h, c in out if c.primary_key),
        dataareaid=dataareaid.field if dataareaid is not None else None,
        missing=tuple(missing),
    )


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
        self._projections: dict[tuple[str, Any], Projection] = {}

    @property
    def source_topics(self) -> list[str]:
        """Per-table topics of every download subjob (sorted)."""
        return sorted(self._rules)

    def subjob_of(self, topic: str) -> Subjob | None:
        rule = self._rules.get(topic)
        return rule.subjob if rule else None

    def groups_of(self, topic: str) -> tuple[str, ...]:
        """Every group that may receive records of ``topic``."""
        rule = self._rules.get(topic)
        return tuple(g for g, _ in rule.groups) if rule else ()

    def pairs(self) -> set[tuple[str, str]]:
        """``(group id, source topic)`` for every group that may receive records of the topic."""
        return {(g, topic) for topic, rule in self._rules.items() for g, _ in rule.groups}

    def projection(self, subjob: Subjob, columns: tuple[Column, ...], schema_id: Any = None) -> Projection:
        key = (subjob.id, schema_id if schema_id is not None else columns)
        found = self._projections.get(key)
        if found is None:
            found = self._projections[key] = project(subjob, columns)
        return found

    def route(self, record: SourceRecord) -> list[Route]:
        rule = self._rules.get(record.topic)
        env = record.value
        if rule is None or env is None or not rule.groups:
            return []
        proj = self.projection(rule.subjob, record.columns, record.schema_id)
        op = env["op"]
        is_delete = op == "d"
        hq_row = env["before"] if is_delete else env["after"]
        if hq_row is None:
            hq_row = record.key
        hq_row = {**record.key, **{k: v for k, v in hq_row.items() if v is not None}} if is_delete else hq_row
        groups = _select(rule.groups, proj.dataareaid, hq_row, is_delete)
        if not groups:
            return []
        key = proj.key(hq_row)
        row = None if is_delete else proj.row(hq_row)
        value = make_value(proj.schemas, op=op, key=key, row=row, source=env["source"], ts_ms=env["ts_ms"],
                           subjob=rule.subjob.id, position=record.position)
        routes = [Route(groups, proj.schemas, key, value)]
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
