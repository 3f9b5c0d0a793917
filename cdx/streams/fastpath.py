"""The router's byte-level path for upserts and deletes: route without decoding, write without encoding.

Most records of a table topic are upserts (``c``/``u``/``r``) of rows whose groups do not change, or
deletes. For those, ``RecordRouter`` routes on bytes with a ``FastTable`` per (source topic, writer
schemas), doing what its decoding path does:

- ``cdx.streams.avroscan`` finds the runs of bytes of the row's columns (``after``; ``before`` for a
  delete) and reads ``op``;
- the groups come from the DATAAREAID column's bytes (cached per distinct value), the channel
  filter's value from the filter column's bytes (a ``string``, ``int`` or ``long`` column);
- the routed value of an upsert is sliced together: the routed schema's single-object header,
  ``before`` null, the projected columns' runs in channel order, the source's ``source``, ``op`` and
  ``ts_ms`` verbatim, then the encoded ``target``, ``subjob``, ``position`` and ``filter``; a delete's
  is the key columns in ``before`` (the other columns null), ``after`` null, the same tail, followed by
  its tombstone (``cdx.routed.tombstone_headers``); the routed key is the source key body under the
  routed key schema's header;
- key state as ``cdx.streams.stateful.route_stateful`` keeps it (``held_after``, ``delete_targets``): an
  upsert takes this path only when it removes the row from no group; one that does (a move: deletes
  to send), tombstones, columns the scanner does not handle, Debezium-shaped envelopes (another
  ``source`` record) and other encodings take the decoding path.

Equal output is proven, not assumed: ``build`` checks that the routed schemas lay the projected
columns, the key and ``source`` out with the writer's types, and the first upsert and the first
delete of each table (per writer schemas) in a transaction go through the decoding path (which also
publishes the routed schemas into that transaction); their records are compared byte for byte with
what this path makes, and only on equality is the path enabled (until an abort: ``reset``).
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from cdx.codec.binary import avro_long, avro_string
from cdx.codec.single_object import HEADER_SIZE, MAGIC
from cdx.routed import RoutedSchemas, SourcePosition, tombstone_headers
from cdx.streams.avroscan import EnvelopeLayout, read_long, read_string
from cdx.streams.routing import Projection, RoutingPlan
from cdx.topology import DATAAREAID

log = logging.getLogger("cdx.router")

_DATAAREAID = DATAAREAID.casefold()
_EMPTY: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Target:
    """One projection compiled: headers, column runs (writer field index ranges), fixed routing bytes."""

    key_header: bytes
    value_header: bytes
    runs: tuple[tuple[int, int], ...]
    fixed: bytes
    schemas: RoutedSchemas
    delete_nulls: bytes
    """A routed delete's ``before`` after its key columns: null for each other column."""


def _runs(order: list[int]) -> tuple[tuple[int, int], ...]:
    """Writer field indexes in output order as contiguous ranges ``[a, b)``."""
    runs: list[list[int]] = []
    for i in order:
        if runs and runs[-1][1] == i:
            runs[-1][1] = i + 1
        else:
            runs.append([i, i + 1])
    return tuple((a, b) for a, b in runs)


class FastTable:
    """One (source topic, writer schemas) compiled for the byte-level path; None from ``build`` if unsupported."""

    def __init__(self, topic: str, layout: EnvelopeLayout, targets: tuple[Target, ...], rule: tuple[Any, ...],
                 entity_field: int | None, filter_field: tuple[int, bool, bool] | None,
                 may_move: bool, subjob_id: str, deletes: bool) -> None:
        self.topic = topic
        self.layout = layout
        self.targets = targets
        self.rule = rule
        self.all_groups = frozenset(g for g, _ in rule)
        self.entity_field = entity_field
        self.filter_field = filter_field
        self.may_move = may_move
        self.state_prefix = topic.encode() + b"\0"
        self.subjob = subjob_id
        self.deletes = deletes
        self.verified = self.verified_delete = False
        self._groups: dict[tuple[bytes, bool], tuple[str, ...]] = {}
        self.takes: dict[tuple[str, ...], frozenset[str]] = {}
        self._partitions: dict[int, bytes] = {}

    @classmethod
    def build(cls, plan: RoutingPlan, topic: str, writer_value: dict[str, Any], writer_key: dict[str, Any],
              projections: tuple[Projection, ...]) -> FastTable | None:
        layout = EnvelopeLayout.compile(writer_value)
        rule = plan.rule_groups(topic)
        subjob = plan.subjob_of(topic)
        if layout is None or subjob is None or not all(_same_types(writer_value, writer_key, p) for p in projections):
            return None
        index = {name: i for i, name in enumerate(layout.names)}
        main = projections[0]
        if any(p.missing for p in projections) or any(src not in index for p in projections for src, _ in p.fields):
            return None
        targets = []
        for p in projections:
            kh, vh = MAGIC + p.schemas.key.fingerprint, MAGIC + p.schemas.value.fingerprint
            fixed = (avro_string(p.schemas.schema) + avro_string(p.schemas.table) + avro_string(subjob.id)
                     + avro_string(topic))
            targets.append(Target(kh, vh, _runs([index[src] for src, _ in p.fields]), fixed, p.schemas,
                                  b"\x00" * (len(p.fields) - len(p.key_fields))))
        entity = index[main.dataareaid] if main.dataareaid is not None else None
        flt = None
        if main.filter_field is not None:
            kind = _scalar(writer_value, main.filter_field)
            if kind not in ("string", "int", "long"):
                return None
            flt = (index[main.filter_field], layout.row[index[main.filter_field]][0], kind == "string")
        if main.dataareaid is not None and entity is not None and (
                _scalar(writer_value, main.dataareaid) != "string"):
            return None
        may_move = entity is not None and main.dataareaid not in {src for src, _ in main.key_fields}
        deletes = all(p.fields[:len(p.key_fields)] == p.key_fields for p in projections) and all(
            isinstance(t, list) and t[0] == "null" for p in projections
            for t in _row_types(p)[len(p.key_fields):])
        return cls(topic, layout, tuple(targets), rule, entity, flt, may_move, subjob.id, deletes)

    def groups(self, data: bytes, starts: list[int], delete: bool) -> tuple[str, ...]:
        """The groups whose legal entities hold the row (``cdx.streams.routing._select``): a delete whose row
        lacks DATAAREAID goes to every group, an upsert without it to none."""
        if self.entity_field is None:
            return tuple(g for g, _ in self.rule)
        raw = data[starts[self.entity_field]:starts[self.entity_field + 1]]
        found = self._groups.get((raw, delete))
        if found is None:
            value = read_string(raw, self.layout.row[self.entity_field][0])
            if value is None:
                found = tuple(g for g, _ in self.rule) if delete else ()
            else:
                wanted = value.strip().casefold()
                found = tuple(g for g, entities in self.rule if wanted in entities)
            if len(self._groups) > 10_000:
                self._groups.clear()
            self._groups[(raw, delete)] = found
        return found

    def filter_tail(self, data: bytes, starts: list[int]) -> bytes:
        """The routed value's ``filter`` field: null, or ``{value: <the filter column>}``."""
        if self.filter_field is None:
            return b"\x00"
        i, nullable, text = self.filter_field
        run = data[starts[i]:starts[i + 1]]
        if nullable and run[0] == 0:
            return b"\x02\x00"
        if text:
            return b"\x02" + run if nullable else b"\x02\x02" + run
        return b"\x02\x02" + avro_string(str(read_long(run, 1 if nullable else 0)[0]))

    def records(self, data: bytes, key: bytes, starts: list[int], end: int, partition: int, offset: int
                ) -> list[tuple[bytes, bytes]]:
        """(key bytes, value bytes) per target (own table, then extension table)."""
        source = data[end:]
        part = self._partitions.get(partition)
        if part is None:
            part = self._partitions[partition] = avro_long(partition)
        position = part + avro_long(offset) + self.filter_tail(data, starts)
        body = key[HEADER_SIZE:]
        out = []
        for t in self.targets:
            if len(t.runs) == 1:
                a, b = t.runs[0]
                row = data[starts[a]:starts[b]]
            else:
                row = b"".join([data[starts[a]:starts[b]] for a, b in t.runs])
            out.append((t.key_header + body, b"".join((t.value_header, b"\x00\x02", row, source, t.fixed, position))))
        return out


def delete_records(table: FastTable, data: bytes, key: bytes, source: int, partition: int, offset: int
                   ) -> list[tuple[bytes, bytes | None, Any]]:
    """Per target: the routed delete (key columns in ``before``, ``after`` null), then its tombstone."""
    tail = data[source:]
    position = avro_long(partition) + avro_long(offset) + b"\x00"
    body = key[HEADER_SIZE:]
    out: list[tuple[bytes, bytes | None, Any]] = []
    for t in table.targets:
        kb = t.key_header + body
        vb = b"".join((t.value_header, b"\x02", body, t.delete_nulls, b"\x00", tail, t.fixed, position))
        out += [(kb, vb, None), (kb, None, tombstone_headers(t.schemas, table.subjob, SourcePosition(
            table.topic, partition, offset)))]
    return out


def _row_types(p: Projection) -> list[Any]:
    return [f["type"] for f in p.schemas.value.to_dict()["fields"][0]["type"][1]["fields"]]


def _same_types(writer_value: dict[str, Any], writer_key: dict[str, Any], p: Projection) -> bool:
    """True when the routed schemas lay out the projected columns, the key and ``source`` as the writer's do."""
    routed = p.schemas.value.to_dict()
    routed_row = routed["fields"][0]["type"][1]["fields"]
    writer_types = {f["name"]: f["type"] for f in writer_value["fields"][0]["type"][1]["fields"]}
    if len(routed_row) != len(p.fields) or routed["fields"][2]["type"] != writer_value["fields"][2]["type"]:
        return False
    pairs = zip(p.fields, routed_row, strict=True)
    if any(rf["name"] != out or rf["type"] != writer_types.get(src) for (src, out), rf in pairs):
        return False
    routed_key = [f["type"] for f in p.schemas.key.to_dict()["fields"]]
    return routed_key == [f["type"] for f in writer_key["fields"]]


def _scalar(writer_value: dict[str, Any], field: str) -> str | None:
    """The Avro type of a row column when it is a plain ``string``, ``int`` or ``long`` (no logical type)."""
    record = writer_value["fields"][0]["type"][1]
    t = next(f["type"] for f in record["fields"] if f["name"] == field)
    t = t[1] if isinstance(t, list) else t
    if isinstance(t, dict) and "logicalType" not in t:
        t = t.get("type")
    return t if t in ("string", "int", "long") else None


def delete_targets(table: FastTable, held: frozenset[str] | None, groups: tuple[str, ...],
                   wanted: Collection[str] | None) -> tuple[tuple[str, ...], frozenset[str] | None]:
    """A delete's groups and the key's groups after it (``cdx.streams.stateful.route_stateful``)."""
    scope = table.all_groups if wanted is None else frozenset(wanted)
    kept = None if held is None else (held - scope) or None
    if not groups:
        return (), kept
    if held is None:
        return tuple(g for g in groups if g in scope), kept
    return tuple(g for g, _ in table.rule if g in held and g in scope), kept


def held_after(table: FastTable, held: frozenset[str] | None, op: str, groups: tuple[str, ...],
               wanted: Collection[str] | None) -> frozenset[str] | None:
    """The key's groups after this upsert, or None when it removes the row from a group (a delete to send)."""
    if wanted is None:  # the live stream: every group of the topic
        takes = table.takes.get(groups)
        if takes is None:
            takes = table.takes[groups] = frozenset(groups)
        if held is None:
            moved = op == "u" and table.may_move and len(takes) < len(table.all_groups)
            return None if moved else takes
        if held <= takes:
            return takes
    scope = table.all_groups if wanted is None else frozenset(wanted)
    takes = frozenset(g for g in groups if g in scope)
    if held is None:
        if op == "u" and table.may_move and scope - takes:
            return None
        return takes
    if (held & scope) - takes:
        return None
    return (held - scope) | takes
