"""Property: any valid topology survives model -> YAML -> model unchanged."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdx.topology import dump_topology, parse_topology
from cdx.topology.loader import validate_topology

IDENT = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True).filter(
    lambda s: s.upper() != "DATAAREAID" and not s.upper().startswith("X_"))
TOPIC_ID = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,10}", fullmatch=True)
TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), max_size=30)
DESC = st.none() | TEXT
ENTITY = st.from_regex(r"[a-z0-9]{1,4}", fullmatch=True)


def _unique(strategy: st.SearchStrategy[str], n_min: int, n_max: int) -> st.SearchStrategy[list[str]]:
    return st.lists(strategy, min_size=n_min, max_size=n_max, unique_by=lambda s: s.casefold().replace(".", "_"))


@st.composite
def topologies(draw: st.DrawFn) -> dict[str, Any]:
    job_ids = draw(_unique(TOPIC_ID, 1, 4))
    jobs = [{"id": j, "description": draw(DESC), "direction": draw(st.sampled_from(["download", "upload"]))}
            for j in job_ids]
    by_dir = {d: [j["id"] for j in jobs if j["direction"] == d] for d in ("download", "upload")}
    subjobs = []
    for i in range(draw(st.integers(0, 4))):
        direction = draw(st.sampled_from([d for d, ids in by_dir.items() if ids]))
        names = draw(st.lists(IDENT, min_size=1, max_size=5, unique_by=str.casefold))
        fields: list[Any] = [n if draw(st.booleans()) else {"name": n, "to_name": f"{n}_c"} for n in names]
        channel_names = [f if isinstance(f, str) else f["to_name"] for f in fields]
        sub: dict[str, Any] = {
            "id": f"S{i}", "description": draw(DESC), "direction": direction,
            "hq_table": draw(st.sampled_from([f"T{i}", f"dbo.T{i}"])),
            "channel_table": draw(st.sampled_from([None, f"C{i}", f"ext.C{i}"])),
            "fields": fields,
            "scheduled_by": draw(st.lists(st.sampled_from(by_dir[direction]), min_size=1, unique=True)),
        }
        if direction == "upload":
            sub["replication_counter"] = draw(st.sampled_from(channel_names))
        elif draw(st.booleans()):
            sub["channel_filter"] = {"column": names[0], "attribute": "recid"}
        if draw(st.booleans()):
            sub["extension"] = {
                "table": f"ext.E{i}", "override_target": direction == "upload" and draw(st.booleans()),
                "fields": [f"X_{n}" for n in draw(st.lists(IDENT, min_size=1, max_size=3, unique_by=str.casefold))],
                "key": draw(st.lists(st.sampled_from(channel_names), unique_by=str.casefold, max_size=2)),
            }
        subjobs.append({k: v for k, v in sub.items() if v is not None})
    group_ids = draw(_unique(TOPIC_ID, 0, 3))
    groups = []
    for g, gid in enumerate(group_ids):
        channels = []
        for c in range(draw(st.integers(0, 2))):
            dsn = draw(st.sampled_from([f"sqlite:///db/c{g}_{c}.db", f"postgresql://u@pg:5432/c{g}_{c}"]))
            channels.append({
                "id": f"ch{g}-{c}", "description": draw(DESC),
                "type": draw(st.sampled_from(["store", "online", "call_center"])),
                "database": {"dsn": dsn},
                "attributes": {"recid": draw(st.integers(0, 2**62) | TEXT)},
                "offline_registers": [{"id": f"ch{g}-{c}-pos{r}", "database": {"dsn": f"sqlite:///db/r{g}{c}{r}.db"}}
                                      for r in range(draw(st.integers(0, 1)))],
            })
        groups.append({"id": gid, "description": draw(DESC),
                       "legal_entities": draw(st.lists(ENTITY, min_size=1, max_size=3, unique=True)),
                       "channels": channels})
    schedules = []
    if group_ids:
        for s, direction in enumerate(draw(st.lists(st.sampled_from(["download", "upload"]), max_size=3))):
            if by_dir[direction]:
                schedules.append({"id": f"D{s}", "direction": direction,
                                  "jobs": draw(st.lists(st.sampled_from(by_dir[direction]), min_size=1, unique=True)),
                                  "channel_data_groups": draw(st.lists(st.sampled_from(group_ids), min_size=1,
                                                                       unique=True))})
    kafka: dict[str, Any] = {
        "bootstrap_servers": draw(st.sampled_from(["localhost:9092", "k1:9092,k2:9093"])),
        "topic_prefix": draw(TOPIC_ID),
        "security": draw(st.dictionaries(st.sampled_from(["sasl.username", "sasl.password", "ssl.ca.location",
                                                          "security.protocol"]), TEXT, max_size=3)),
        "default_partitions": draw(st.integers(1, 64)),
        "replication_factor": draw(st.integers(1, 3)),
    }
    if draw(st.booleans()):
        kafka["schema_registry"] = {"url": "http://registry:8081", "config": {"basic.auth.user.info": draw(TEXT)}}
    return {"kafka": kafka, "hq": {"name": draw(TOPIC_ID), "dsn": "sqlite:///hq/hq.db"},
            "jobs": jobs, "subjobs": subjobs, "channel_data_groups": groups, "distribution_schedules": schedules}


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(topologies())
def test_model_yaml_model(data: dict[str, Any]) -> None:
    topo = validate_topology(_drop_none(data))
    text = dump_topology(topo)
    again = parse_topology(text, environ={})
    assert again == topo
    assert dump_topology(again) == text


@settings(max_examples=30, deadline=None)
@given(st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), max_size=40))
def test_any_description_round_trips(description: str) -> None:
    data = {"kafka": {"bootstrap_servers": "h:1"}, "hq": {"dsn": "sqlite:///hq.db"},
            "jobs": [{"id": "1", "direction": "download", "description": description}]}
    topo = validate_topology(data)
    assert parse_topology(dump_topology(topo), environ={}) == topo
