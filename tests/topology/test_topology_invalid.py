"""Invalid topologies: every problem is reported with its path, YAML line and a useful message."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from cdx.topology import TopologyError, parse_topology

Data = dict[str, Any]


def _set(path: str, value: Any) -> Callable[[Data], None]:
    """Mutation setting ``a.b[0].c`` to ``value``."""

    def mutate(data: Data) -> None:
        from cdx.topology.loader import parse_path

        parts = parse_path(path)
        node: Any = data
        for part in parts[:-1]:
            node = node[part]
        node[parts[-1]] = value

    return mutate


def _append(path: str, value: Any) -> Callable[[Data], None]:
    def mutate(data: Data) -> None:
        from cdx.topology.loader import parse_path

        node: Any = data
        for part in parse_path(path):
            node = node[part]
        node.append(value)

    return mutate


def _delete(path: str) -> Callable[[Data], None]:
    def mutate(data: Data) -> None:
        from cdx.topology.loader import parse_path

        parts = parse_path(path)
        node: Any = data
        for part in parts[:-1]:
            node = node[part]
        del node[parts[-1]]

    return mutate


def _chain(*fns: Callable[[Data], None]) -> Callable[[Data], None]:
    def mutate(data: Data) -> None:
        for fn in fns:
            fn(data)

    return mutate


CASES: list[tuple[str, Callable[[Data], None], str, str]] = [
    ("unknown job", _set("subjobs[0].scheduled_by", ["1041"]), "subjobs[0].scheduled_by[0]",
     "unknown job '1041' (did you mean '1040'?)"),
    ("unknown group", _set("distribution_schedules[0].channel_data_groups", ["g1", "g3"]),
     "distribution_schedules[0].channel_data_groups[1]", "unknown channel data group 'g3'"),
    ("unknown job in schedule", _append("distribution_schedules[0].jobs", "7000"),
     "distribution_schedules[0].jobs[2]", "unknown job '7000'"),
    ("subjob scheduled by job of other direction", _set("subjobs[0].scheduled_by", ["P-0001"]),
     "subjobs[0].scheduled_by[0]", "download subjob 'InventTable' is scheduled by upload job 'P-0001'"),
    ("schedule runs job of other direction", _append("distribution_schedules[1].jobs", "1040"),
     "distribution_schedules[1].jobs[1]", "upload schedule 'UP' runs download job '1040'"),
    ("two subjobs on one HQ table", _append("subjobs", {"id": "Dup", "hq_table": "dbo.inventtable",
                                                        "fields": ["ITEMID"], "scheduled_by": ["1040"]}),
     "subjobs[3].hq_table", "HQ table 'dbo.inventtable' is already replicated by subjob 'InventTable'"),
    ("two subjobs on one channel table", _append("subjobs", {"id": "Other", "hq_table": "dbo.OTHER",
                                                             "channel_table": "ax.INVENTTABLE",
                                                             "fields": ["A"], "scheduled_by": ["1040"]}),
     "subjobs[3].channel_table", "channel table 'ax.INVENTTABLE' is already the download table"),
    ("duplicate job id", _append("jobs", {"id": 1040, "direction": "download"}), "jobs[3].id",
     "duplicate job id '1040' (first defined at jobs[0])"),
    ("duplicate subjob id", _set("subjobs[1].id", "inventtable"), "subjobs[1].id", "duplicate subjob id"),
    ("duplicate group id", _set("channel_data_groups[1].id", "g1"), "channel_data_groups[1].id",
     "duplicate channel data group id 'g1'"),
    ("duplicate schedule id", _set("distribution_schedules[1].id", "DL"), "distribution_schedules[1].id",
     "duplicate distribution schedule id 'DL'"),
    ("duplicate channel id across groups", _set("channel_data_groups[1].channels[0].id", "s1"),
     "channel_data_groups[1].channels[0].id", "channel id 's1' is already used"),
    ("register id equal to a channel id", _set("channel_data_groups[0].channels[0].offline_registers[0].id", "s2"),
     "channel_data_groups[1].channels[0].id", "already used by a offline register"),
    ("upload subjob without replication counter", _delete("subjobs[2].replication_counter"),
     "subjobs[2].replication_counter", "an upload subjob needs a replication_counter"),
    ("replication counter not a field", _set("subjobs[2].replication_counter", "REPLCOUNTER"),
     "subjobs[2].replication_counter", "'REPLCOUNTER' is not one of the subjob's channel columns"),
    ("download subjob with replication counter", _set("subjobs[0].replication_counter", "RECID"),
     "subjobs[0].replication_counter", "only upload subjobs have a replication counter"),
    ("invalid SQL identifier", _set("subjobs[0].fields[1]", "NAME ALIAS"), "subjobs[0].fields[1]",
     "'NAME ALIAS' is not a valid SQL identifier"),
    ("invalid table name", _set("subjobs[0].hq_table", "dbo.INVENT-TABLE"), "subjobs[0].hq_table",
     "'INVENT-TABLE' is not a valid SQL identifier"),
    ("too many dots in table name", _set("subjobs[0].hq_table", "db.dbo.INVENTTABLE"), "subjobs[0].hq_table",
     "write 'TABLE' or 'schema.TABLE'"),
    ("identifier too long", _set("subjobs[0].fields[0]", "A" * 129), "subjobs[0].fields[0]",
     "is 129 characters long; the limit is 128"),
    ("database in two groups", _set("channel_data_groups[1].channels[0].database.dsn", "sqlite:///./s1.db"),
     "channel_data_groups[1].channels[0].database.dsn", "a database belongs to exactly one channel data group"),
    ("database shared in one group", _set("channel_data_groups[0].channels[0].offline_registers[0].database.dsn",
                                          "sqlite:///s1.db"),
     "channel_data_groups[0].channels[0].offline_registers[0].database.dsn", "needs its own database"),
    ("channel database is the HQ database", _set("channel_data_groups[1].channels[0].database.dsn",
                                                 "sqlite:///hq.db"),
     "channel_data_groups[1].channels[0].database.dsn", "uses the HQ database"),
    ("field mapped twice", _append("subjobs[0].fields", "itemid"), "subjobs[0].fields[3].name",
     "field 'itemid' is mapped twice (also at subjobs[0].fields[0])"),
    ("two fields to one channel column", _append("subjobs[0].fields", {"name": "ITEMNAME", "to_name": "NAMEALIAS"}),
     "subjobs[0].fields[3].to_name", "channel column 'NAMEALIAS' is the target of two fields"),
    ("DATAAREAID mapped", _append("subjobs[0].fields", "DataAreaId"), "subjobs[0].fields[3].name",
     "'DataAreaId' is mapped explicitly; remove it, cdx adds DATAAREAID automatically"),
    ("DATAAREAID as to_name", _append("subjobs[0].fields", {"name": "COMPANY", "to_name": "DATAAREAID"}),
     "subjobs[0].fields[3].to_name", "mapped explicitly"),
    ("empty field list", _set("subjobs[0].fields", []), "subjobs[0].fields", "must list at least 1 item"),
    ("subjob not scheduled", _set("subjobs[0].scheduled_by", []), "subjobs[0].scheduled_by",
     "must list at least 1 item"),
    ("unknown key", _set("subjobs[0].hq_tabel", "X"), "subjobs[0].hq_tabel",
     "unknown key 'hq_tabel' (did you mean 'hq_table'?)"),
    ("missing required key", _delete("subjobs[0].hq_table"), "subjobs[0].hq_table",
     "required key 'hq_table' is missing"),
    ("bad direction", _set("jobs[0].direction", "sideways"), "jobs[0].direction",
     "must be 'download' or 'upload', not 'sideways'"),
    ("bad dialect", _set("hq.dialect", "oracle"), "hq.dialect", "must be 'sqlite', 'postgresql' or 'sqlserver'"),
    ("dialect contradicts dsn", _set("hq.dsn", "postgresql://hq/db"), "hq.dsn",
     "dsn looks like a postgresql DSN but dialect is 'sqlite'"),
    ("dialect cannot be inferred", _set("channel_data_groups[0].channels[0].database", {"dsn": "file.db"}),
     "channel_data_groups[0].channels[0].database", "cannot tell the dialect from the dsn"),
    ("bad sqlite dsn", _set("hq.dsn", "sqlite://hq.db"), "hq.dsn", "is not a SQLite DSN"),
    ("illegal topic characters", _set("channel_data_groups[0].id", "us stores"), "channel_data_groups[0].id",
     "cannot be used in a Kafka topic name"),
    ("topic name collision", _chain(_set("channel_data_groups[0].id", "us_1"),
                                    _set("channel_data_groups[1].id", "us.1"),
                                    _set("distribution_schedules[0].channel_data_groups", ["us_1", "us.1"]),
                                    _set("distribution_schedules[1].channel_data_groups", ["us_1"])),
     "channel_data_groups[1].id", "collides with 'us_1'"),
    ("bad bootstrap servers", _set("kafka.bootstrap_servers", "localhost"), "kafka.bootstrap_servers",
     "is not a list of host:port"),
    ("security key that is not a security setting", _set("kafka.security", {"group.id": "x"}), "kafka.security",
     "'group.id' is not a security setting"),
    ("partitions below one", _set("kafka.default_partitions", 0), "kafka.default_partitions", "must be >= 1"),
    ("schema registry without http", _set("kafka.schema_registry", {"url": "localhost:8081"}),
     "kafka.schema_registry.url", "is not an http:// or https:// URL"),
    ("legal entity listed twice", _set("channel_data_groups[0].legal_entities", ["usrt", "USRT"]),
     "channel_data_groups[0].legal_entities[1]", "legal entity 'USRT' is listed twice"),
    ("group without legal entity", _set("channel_data_groups[0].legal_entities", []),
     "channel_data_groups[0].legal_entities", "must list at least 1 item"),
    ("channel missing the filter attribute", _set("channel_data_groups[1].channels[0].attributes", {}),
     "channel_data_groups[1].channels[0].attributes",
     "channel 's2' receives subjob 'RetailChannelTable', filtered on attribute 'recid', but has no attribute"),
    ("filter column not a field", _set("subjobs[1].channel_filter.column", "CHANNEL"),
     "subjobs[1].channel_filter.column", "filter column 'CHANNEL' is not one of the subjob's fields"),
    ("filter on upload subjob", _set("subjobs[2].channel_filter", {"column": "STORE", "attribute": "recid"}),
     "subjobs[2].channel_filter", "only download subjobs can be filtered per channel"),
    ("override_target on download", _set("subjobs[0].extension", {"table": "ext.INVENTTABLE",
                                                                  "override_target": True, "fields": ["X"]}),
     "subjobs[0].extension.override_target", "override_target applies to upload subjobs only"),
    ("extension table is the own table", _set("subjobs[2].extension", {"table": "ax.RETAILTRANSACTIONTABLE",
                                                                       "fields": ["X"]}),
     "subjobs[2].extension.table", "is the subjob's own channel table"),
    ("extension key not a field", _set("subjobs[2].extension", {"table": "ext.T", "key": ["CHANNEL"],
                                                                "fields": ["X"]}),
     "subjobs[2].extension.key[0]", "key column 'CHANNEL' is not one of the subjob's channel columns"),
    ("extension field mapped twice", _set("subjobs[2].extension", {"table": "ext.T", "fields": ["STORE"]}),
     "subjobs[2].extension.fields[0].name", "field 'STORE' is mapped twice"),
    ("attribute value of wrong type", _set("channel_data_groups[0].channels[0].attributes", {"recid": [1]}),
     "channel_data_groups[0].channels[0].attributes.recid", "expected"),
    ("job listed twice on a subjob", _set("subjobs[0].scheduled_by", ["1040", "1040"]),
     "subjobs[0].scheduled_by[1]", "job '1040' is listed twice"),
    ("missing environment variable", _set("kafka.security", {"sasl.password": "${CDX_TEST_NO_SUCH_VAR}"}),
     "kafka.security['sasl.password']", "environment variable CDX_TEST_NO_SUCH_VAR is not set"),
    ("bad version", _set("version", 2), "version", "must be 1"),
]


@pytest.mark.parametrize(("mutate", "path", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_invalid_case(minimal: Callable[[], Data], to_yaml: Callable[[Any], str],
                      mutate: Callable[[Data], None], path: str, message: str) -> None:
    data = minimal()
    mutate(data)
    with pytest.raises(TopologyError) as info:
        parse_topology(to_yaml(data), source="topology.yaml", environ={})
    matching = [i for i in info.value.issues if i.path == path]
    assert matching, f"no issue at {path}: {[str(i) for i in info.value.issues]}"
    assert any(message in i.message for i in matching), [str(i) for i in matching]
    assert all(i.line is not None and i.file == "topology.yaml" for i in info.value.issues)
    assert f"topology.yaml:{matching[0].line}: {path}: " in str(info.value)


def test_there_are_at_least_25_distinct_cases() -> None:
    assert len({c[0] for c in CASES}) >= 25


def test_minimal_is_valid(minimal: Callable[[], Data], to_yaml: Callable[[Any], str]) -> None:
    topo = parse_topology(to_yaml(minimal()), environ={})
    assert len(topo.subjobs) == 3


def test_every_error_is_collected_with_exact_line() -> None:
    text = """\
kafka: {bootstrap_servers: "localhost:9092"}
hq: {dialect: sqlite, dsn: "sqlite:///hq.db"}
jobs:
  - {id: 1040, direction: download}
subjobs:
  - id: InventTable
    hq_table: dbo.INVENTTABLE
    fields:
      - ITEMID
      - DATAAREAID
    scheduled_by: [1040, 9999]
  - id: Bad
    hq_table: dbo.X
    fields: ["not valid"]
    scheduled_by: [1040]
"""
    with pytest.raises(TopologyError) as info:
        parse_topology(text, environ={})
    found = {(i.line, i.path) for i in info.value.issues}
    assert (10, "subjobs[0].fields[1].name") in found
    assert (11, "subjobs[0].scheduled_by[1]") in found
    assert (14, "subjobs[1].fields[0]") in found
    rendered = str(info.value)
    assert ("topology.yaml:10: subjobs[0].fields[1].name: 'DATAAREAID' is mapped explicitly; remove it, "
            "cdx adds DATAAREAID automatically") in rendered
    assert rendered.startswith("topology.yaml is invalid (3 problems):")


def test_structural_and_reference_errors_in_one_run() -> None:
    text = """\
kafka: {bootstrap_servers: "localhost:9092"}
hq: {dialect: sqlite, dsn: "sqlite:///hq.db"}
jobs:
  - {id: 1040, direction: down}
subjobs:
  - {id: A, hq_table: T, fields: [X], scheduled_by: [1040, 2000]}
"""
    with pytest.raises(TopologyError) as info:
        parse_topology(text, environ={})
    paths = [i.path for i in info.value.issues]
    assert paths == ["jobs[0].direction", "subjobs[0].scheduled_by[1]"]  # job 1040 declared, so not unknown


@pytest.mark.parametrize(("text", "line", "message"), [
    ("kafka: [1\nhq: 2\n", 2, "YAML syntax error"),
    ("kafka: {bootstrap_servers: 'a:1'}\nkafka: {}\n", 2, "duplicate key 'kafka' (first at line 1)"),
    ("", 1, "the file is empty"),
    ("a: 1\n---\nb: 2\n", 3, "more than one YAML document"),
    ("- just\n- a list\n", 1, "the top level must be a mapping"),
    ("kafka: !secret x\nhq: 1\n", 1, "unsupported YAML tag '!secret'"),
    ("kafka:\n\tbootstrap_servers: x\n", 2, "YAML syntax error"),
])
def test_bad_yaml(text: str, line: int, message: str) -> None:
    with pytest.raises(TopologyError) as info:
        parse_topology(text, environ={})
    assert any(i.line == line and message in i.message for i in info.value.issues), str(info.value)


def test_merge_keys_and_anchors_are_supported(minimal: Callable[[], Data], to_yaml: Callable[[Any], str]) -> None:
    text = to_yaml(minimal()) + "x_defaults: &db {dialect: sqlite}\n"
    with pytest.raises(TopologyError) as info:  # unknown top-level key, but anchors parse
        parse_topology(text, environ={})
    assert [i.path for i in info.value.issues] == ["x_defaults"]


def test_unreadable_files(tmp_path: Any) -> None:
    from cdx.errors import ConfigError
    from cdx.topology import load_topology

    with pytest.raises(ConfigError, match="not found; pass the file or set \\$CDX_TOPOLOGY"):
        load_topology(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="is a directory"):
        load_topology(tmp_path)
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_topology(binary)
