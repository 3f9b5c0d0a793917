"""Shapes of what a group receives of a table, when a topology change needs a re-route, and the
shape kept with the router's progress. Pure (no Kafka)."""

from __future__ import annotations

import json

from cdx.streams.progress import Progress, encode_next
from cdx.streams.reshape import group_shape, reroute_needed, same_shape
from cdx.topology import parse_topology

BASE = """
kafka: {{bootstrap_servers: "127.0.0.1:1"}}
hq: {{dsn: "sqlite:///hq.db"}}
jobs: [{{id: J1, direction: download}}]
subjobs:
  - {{id: Items, hq_table: dbo.ITEMS, fields: {fields}, scheduled_by: [J1]{extra}}}
channel_data_groups:
  - {{id: g1, legal_entities: {le}, channels: [{{id: c1, database: {{dsn: "sqlite:///c1.db"}}, attributes: {{s: 1}}}}]}}
distribution_schedules:
  - {{id: S1, direction: download, jobs: [J1], channel_data_groups: [g1]}}
"""


def shape(fields: str = "[ITEMID, NAME]", le: str = "[usrt]", extra: str = "") -> dict:
    topo = parse_topology(BASE.format(fields=fields, le=le, extra=extra), source="t.yaml")
    subjob = topo.subjob("Items")
    assert subjob is not None
    return group_shape(topo, subjob, "g1")


def test_new_columns_and_scope_changes_need_a_reroute_removals_do_not() -> None:
    v1 = shape()
    assert v1["cols"] == ["ax.items.itemid", "ax.items.name"] and same_shape(v1, shape())
    assert reroute_needed(v1, shape("[ITEMID, NAME, PRICE]"))                          # a new field
    assert reroute_needed(v1, shape("[ITEMID, {name: NAME, to_name: ITEMNAME}]"))     # a rename: a new column
    assert not reroute_needed(v1, shape("[ITEMID]"))                                  # a removal fills nothing
    assert reroute_needed(v1, shape(le="[usrt, frrt]")) and reroute_needed(v1, shape(le="[frrt]"))
    assert not reroute_needed(v1, shape(le="[USRT]"))                                 # case-insensitive
    assert reroute_needed(v1, shape(extra=", channel_filter: {column: NAME, attribute: s}"))
    assert reroute_needed(v1, shape(extra=", channel_table: ax.ITEMS2"))
    assert not reroute_needed(None, v1)                                               # nothing recorded: adopt
    assert reroute_needed({**v1, "rr": 10}, v1)                                       # an unfinished re-route
    ext = shape(extra=", extension: {table: ext.ITEMSX, fields: [COLOR]}")
    assert "ext.itemsx.color" in ext["cols"] and reroute_needed(v1, ext)


def test_progress_keeps_the_shape_through_next_changes_and_tombstones() -> None:
    p = Progress({}, "t._router_progress")
    k = ("g1", "t.hq.dbo.ITEMS", 0)
    assert p.set(k, 10) and p.encoded(k) == encode_next(10)
    assert p.set_shape(k, {"cols": ["a"], "scope": "s", "gen": 0}) and not p.set_shape(k, {"cols": ["a"], "scope": "s",
                                                                                             "gen": 0})
    p.commit()
    assert p.set(k, 20)
    assert json.loads(p.encoded(k) or b"") == {"next": 20, "shape": {"cols": ["a"], "scope": "s", "gen": 0}}
    p.abort()
    assert p.get(*k) == 10 and p.shape(k) == {"cols": ["a"], "scope": "s", "gen": 0}
    p.set(k, None)
    assert p.shape(k) is None and p.encoded(k) is None
    p.commit()
    assert k not in p.shapes and k not in p.entries
