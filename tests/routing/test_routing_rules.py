"""The routing rules as a pure function (no Kafka): for random topologies and records, a record
reaches exactly the groups the rules say, projected and renamed to the channel columns."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from cdx.codec import Column, LogicalType, SchemaError, SingleObjectCodec, TableSchemas
from cdx.routed import SourcePosition, parse_value
from cdx.streams.routing import RoutingPlan, SourceRecord, hq_columns, project, route
from cdx.topology import Topology, TopologyError
from cdx.topology.loader import validate_topology

ENTITIES = ["usrt", "dert", "USMF"]
S = LogicalType.STRING
SOURCE = {"connector": "cdx", "name": "hq", "ts_ms": 1, "snapshot": "false", "db": "hq", "schema": "dbo",
          "table": "T", "change_version": 7, "version": "0.1.0"}


@st.composite
def worlds(draw: Any) -> tuple[Topology, dict[str, Any]]:
    """A random valid topology plus, per table, its HQ columns and how it carries DATAAREAID."""
    n_jobs = draw(st.integers(1, 3))
    jobs = [f"J{i}" for i in range(n_jobs)]
    groups = [{"id": f"g{i}", "legal_entities": draw(st.lists(st.sampled_from(ENTITIES), min_size=1, max_size=3,
                                                              unique=True))}
              for i in range(draw(st.integers(1, 4)))]
    tables: dict[str, Any] = {}
    subjobs = []
    for t in range(draw(st.integers(1, 3))):
        name = f"T{t}"
        dataarea = draw(st.sampled_from(["key", "column", "none"]))
        cols = [Column("ID", LogicalType.INT64, primary_key=True), Column("A", S), Column("B", S), Column("C", S)]
        if dataarea != "none":
            cols.insert(0 if dataarea == "key" else 2, Column("DATAAREAID", S, primary_key=dataarea == "key"))
        mapped = draw(st.lists(st.sampled_from(["ID", "A", "B", "C"]), min_size=1, max_size=4, unique=True))
        fields = [{"name": f, "to_name": f"{f}_CH"} if draw(st.booleans()) else f for f in mapped]
        tables[name] = {"columns": tuple(cols), "dataarea": dataarea, "mapped": mapped}
        subjobs.append({"id": f"S{t}", "hq_table": f"dbo.{name}", "fields": fields,
                        "scheduled_by": draw(st.lists(st.sampled_from(jobs), min_size=1, unique=True))})
    schedules = [{"id": f"D{i}", "direction": "download",
                  "jobs": draw(st.lists(st.sampled_from(jobs), min_size=1, unique=True)),
                  "channel_data_groups": draw(st.lists(st.sampled_from([g["id"] for g in groups]), min_size=1,
                                                       unique=True))}
                 for i in range(draw(st.integers(0, 3)))]
    data = {"kafka": {"bootstrap_servers": "k:9092", "topic_prefix": "p"},
            "hq": {"name": "hq", "dialect": "sqlserver", "dsn": "Driver={x};Server=h;Database=hq"},
            "jobs": [{"id": j, "direction": "download"} for j in jobs], "subjobs": subjobs,
            "channel_data_groups": groups, "distribution_schedules": schedules}
    try:
        topo = validate_topology(data)
    except TopologyError:
        assume(False)
    return topo, {"tables": tables, "raw": data}


def oracle(raw: dict[str, Any], table: str, dataarea: str, dataareaid: str | None, op: str) -> set[str]:
    """The rules, straight from the YAML data (no topology index)."""
    subjob = next(s for s in raw["subjobs"] if s["hq_table"] == f"dbo.{table}")
    groups = {g for d in raw["distribution_schedules"] if set(d["jobs"]) & set(subjob["scheduled_by"])
              for g in d["channel_data_groups"]}
    if dataarea == "none":
        return groups
    if dataareaid is None:
        return groups if op == "d" else set()
    entities = {g["id"]: {e.casefold() for e in g["legal_entities"]} for g in raw["channel_data_groups"]}
    return {g for g in groups if dataareaid.casefold() in entities[g]}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(world=worlds(), data=st.data())
def test_a_record_reaches_exactly_the_groups_the_rules_say(world: Any, data: Any) -> None:
    topo, info = world
    table = data.draw(st.sampled_from(sorted(info["tables"])))
    spec = info["tables"][table]
    cols: tuple[Column, ...] = spec["columns"]
    op = data.draw(st.sampled_from(["c", "u", "r", "d"]))
    dataareaid = data.draw(st.sampled_from([*ENTITIES, "usRT", "zzzz", None])) if spec["dataarea"] != "none" \
        else None
    if spec["dataarea"] == "key" and dataareaid is None:
        dataareaid = "usrt"  # a key column is never null
    row = {"ID": data.draw(st.integers(0, 10**6)), "A": "a", "B": None, "C": "c"}
    if spec["dataarea"] != "none":
        row["DATAAREAID"] = dataareaid
    key = {c.name: row[c.name] for c in cols if c.primary_key}
    if op == "d":
        before = {**key, **dict.fromkeys(c.name for c in cols if not c.primary_key)}
        env = {"before": before, "after": None, "source": SOURCE, "op": op, "ts_ms": 5}
    else:
        env = {"before": None, "after": row, "source": SOURCE, "op": op, "ts_ms": 5}
    topic = f"p.hq.dbo.{table}"
    routes = route(topo, SourceRecord(topic, 1, 42, key, env, cols))

    # a delete of a table whose DATAAREAID is not in the key: the router cannot tell, all groups
    seen = dataareaid if op != "d" or spec["dataarea"] == "key" else None
    want = oracle(info["raw"], table, spec["dataarea"], seen, op)
    assert {g for r in routes for g in r.groups} == want
    event(f"{len(want)} groups, {spec['dataarea']} DATAAREAID, op {op}")
    if not want:
        assert routes == []
        return
    assert len(routes) == (2 if op == "d" else 1)
    first = routes[0]
    assert first.value is not None
    change = parse_value(first.key, first.value)
    assert change.position == SourcePosition(topic, 1, 42) and change.op == op and change.subjob == f"S{table[1:]}"
    assert (change.schema, change.table) == ("ax", table)
    subjob = topo.subjob(f"S{table[1:]}")
    assert subjob is not None
    renamed = dict(subjob.channel_columns())
    channel_names = {c.name for c in first.schemas.columns}
    expect = {renamed.get(c, c) for c in spec["mapped"]} | {renamed.get("ID", "ID")}
    if spec["dataarea"] != "none":
        expect.add("DATAAREAID")
    assert channel_names == expect  # mapped fields renamed, DATAAREAID and the key kept, nothing else
    assert set(change.key) == {renamed.get(c.name, c.name) for c in cols if c.primary_key}
    if op == "d":
        assert change.row is None and routes[1].value is None and routes[1].key == first.key
    else:
        assert change.row == {renamed.get(k, k): v for k, v in row.items() if renamed.get(k, k) in channel_names}


def test_projection_order_rename_and_missing() -> None:
    topo = validate_topology({
        "kafka": {"bootstrap_servers": "k:9092"}, "hq": {"dialect": "sqlite", "dsn": "sqlite:///x.db"},
        "jobs": [{"id": "J", "direction": "download"}],
        "subjobs": [{"id": "Items", "hq_table": "dbo.ITEMS", "channel_table": "crt.ITEM",
                     "fields": [{"name": "name", "to_name": "ITEMNAME"}, "PRICE", "GONE"], "scheduled_by": ["J"]}],
        "channel_data_groups": [{"id": "g", "legal_entities": ["usrt"]}],
        "distribution_schedules": [{"id": "D", "direction": "download", "jobs": ["J"], "channel_data_groups": ["g"]}],
    })
    cols = (Column("ITEMID", S, primary_key=True), Column("NAME", S), Column("DataAreaId", S, primary_key=True),
            Column("PRICE", LogicalType.DECIMAL, precision=10, scale=2), Column("SECRET", S))
    sub = topo.subjob("Items")
    assert sub is not None
    p = project(sub, cols)
    assert [c.name for c in p.schemas.columns] == ["ITEMID", "DATAAREAID", "ITEMNAME", "PRICE"]
    assert [c.name for c in p.schemas.key_columns] == ["ITEMID", "DATAAREAID"]
    assert (p.schemas.schema, p.schemas.table, p.missing, p.dataareaid) == ("crt", "ITEM", ("GONE",), "DataAreaId")
    hq = {"ITEMID": "I1", "NAME": "n", "DataAreaId": "usrt", "PRICE": Decimal("1.50"), "SECRET": "s"}
    assert p.row(hq) == {"ITEMID": "I1", "DATAAREAID": "usrt", "ITEMNAME": "n", "PRICE": Decimal("1.50")}
    clash = (Column("ID", S, primary_key=True), Column("NAME", S), Column("ITEMNAME", S, primary_key=True))
    with pytest.raises(SchemaError):
        project(sub, clash)


def test_hq_columns_follow_the_key_schema_and_plan_queries() -> None:
    cols = (Column("B", S), Column("K2", S, primary_key=True), Column("K1", S, primary_key=True))
    ts = TableSchemas.build("p.hq.dbo.T", [cols[2], cols[1], cols[0]])
    codec = SingleObjectCodec()
    vb = codec.encode_value("t", ts.value, {"before": None, "after": {"K1": "a", "K2": "b", "B": None},
                                            "source": SOURCE, "op": "c", "ts_ms": 1})
    assert vb is not None
    got = hq_columns(codec.writer_schema("t", vb), ts.key)
    assert [c.name for c in got] == ["K1", "K2", "B"]
    topo = validate_topology({
        "kafka": {"bootstrap_servers": "k:9092", "topic_prefix": "p"},
        "hq": {"dialect": "sqlserver", "dsn": "Driver={x};Server=h;Database=hq"},
        "jobs": [{"id": "J", "direction": "download"}],
        "subjobs": [{"id": "T", "hq_table": "dbo.T", "fields": ["B"], "scheduled_by": ["J"]}],
        "channel_data_groups": [{"id": "g", "legal_entities": ["usrt"]}, {"id": "h", "legal_entities": ["x"]}],
        "distribution_schedules": [{"id": "D", "direction": "download", "jobs": ["J"], "channel_data_groups": ["g"]}],
    })
    plan = RoutingPlan(topo)
    assert plan.source_topics == ["p.hq.dbo.T"] and plan.pairs() == {("g", "p.hq.dbo.T")}
    assert plan.group_topics == {"g": "p.group.g", "h": "p.group.h"}
    assert plan.route(SourceRecord("p.hq.dbo.OTHER", 0, 0, {}, {"op": "c"}, got)) == []
    assert plan.route(SourceRecord("p.hq.dbo.T", 0, 0, {"K1": "a", "K2": "b"}, None, got)) == []  # tombstone


def _ext_topology(extension: dict[str, Any], flt: str | None = None) -> Topology:
    sub: dict[str, Any] = {"id": "T", "hq_table": "dbo.T", "fields": ["ID", {"name": "A", "to_name": "A_CH"}],
                           "scheduled_by": ["J"], "extension": extension}
    if flt:
        sub["channel_filter"] = {"column": flt, "attribute": "recid"}
    return validate_topology({
        "kafka": {"bootstrap_servers": "k:9092", "topic_prefix": "p"},
        "hq": {"dialect": "sqlserver", "dsn": "Driver={x};Server=h;Database=hq"},
        "jobs": [{"id": "J", "direction": "download"}],
        "subjobs": [sub],
        "channel_data_groups": [{"id": "g", "legal_entities": ["usrt"], "channels": [
            {"id": "c", "database": {"dsn": "sqlite:///c.db"}, "attributes": {"recid": 7}}]}],
        "distribution_schedules": [{"id": "D", "direction": "download", "jobs": ["J"], "channel_data_groups": ["g"]}],
    })


EXT_COLS = (Column("ID", LogicalType.INT64, primary_key=True), Column("DATAAREAID", S), Column("A", S),
            Column("B", S), Column("STORE", LogicalType.INT64))


def test_a_change_routes_to_its_table_and_its_extension_table_with_one_filter_value() -> None:
    topo = _ext_topology({"table": "ext.TX", "fields": [{"name": "B", "to_name": "B_CH"}, "STORE"]}, flt="STORE")
    row = {"ID": 1, "DATAAREAID": "usrt", "A": "a", "B": "b", "STORE": 7}
    env = {"before": None, "after": row, "source": SOURCE, "op": "u", "ts_ms": 5}
    routes = route(topo, SourceRecord("p.hq.dbo.T", 0, 9, {"ID": 1}, env, EXT_COLS))
    assert [(r.schemas.schema, r.schemas.table) for r in routes] == [("ax", "T"), ("ext", "TX")]
    assert [c.name for c in routes[1].schemas.columns] == ["ID", "DATAAREAID", "B_CH", "STORE"]
    assert [c.name for c in routes[1].schemas.key_columns] == ["ID"]
    changes = [parse_value(r.key, r.value) for r in routes if r.value is not None]
    assert [(c.filtered, c.filter_value) for c in changes] == [(True, "7"), (True, "7")]  # both carry it
    assert changes[1].row == {"ID": 1, "DATAAREAID": "usrt", "B_CH": "b", "STORE": 7}
    assert {c.position for c in changes} == {SourcePosition("p.hq.dbo.T", 0, 9)}
    delete = {"before": {"ID": 1}, "after": None, "source": SOURCE, "op": "d", "ts_ms": 6}
    routes = route(topo, SourceRecord("p.hq.dbo.T", 0, 10, {"ID": 1}, delete, EXT_COLS))
    assert [(r.schemas.table, r.key, r.value is None) for r in routes] == [
        ("T", {"ID": 1}, False), ("T", {"ID": 1}, True), ("TX", {"ID": 1}, False), ("TX", {"ID": 1}, True)]
    assert not parse_value(routes[2].key, routes[2].value or {}).filtered  # deletes are never filtered


def test_an_unfiltered_subjob_and_an_extension_key_that_is_not_the_channel_key() -> None:
    topo = _ext_topology({"table": "ext.TX", "key": ["ID"], "fields": ["B"]})
    env = {"before": None, "after": {"ID": 1, "DATAAREAID": "usrt", "A": "a", "B": "b", "STORE": 7},
           "source": SOURCE, "op": "c", "ts_ms": 5}
    routes = route(topo, SourceRecord("p.hq.dbo.T", 0, 1, {"ID": 1}, env, EXT_COLS))
    assert [parse_value(r.key, r.value or {}).filtered for r in routes] == [False, False]
    bad = _ext_topology({"table": "ext.TX", "key": ["A_CH"], "fields": ["B"]})
    with pytest.raises(SchemaError, match=r"extension.key \[A_CH\] is not the key of its channel table \(ID\)"):
        route(bad, SourceRecord("p.hq.dbo.T", 0, 1, {"ID": 1}, env, EXT_COLS))
