"""The sample topology.yaml at the repo root, and the query helpers downstream code relies on."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from cdx.topology import Direction, TableRef, Topology, load_topology, parse_topology
from cdx.topology.loader import validate_topology
from cdx.topology.summary import print_summary


@pytest.fixture
def sample(repo_root: Path, monkeypatch: pytest.MonkeyPatch) -> Topology:
    monkeypatch.delenv("CDX_DATA_DIR", raising=False)
    monkeypatch.delenv("CDX_KAFKA_BOOTSTRAP", raising=False)
    return load_topology(repo_root / "topology.yaml")


def test_sample_shape(sample: Topology) -> None:
    entities = {e for g in sample.channel_data_groups for e in g.legal_entities}
    assert len(entities) >= 2
    assert len(sample.channel_data_groups) == 3
    channels = sample.channels()
    assert len(channels) == 6
    assert any(c.channel.type.value == "online" for c in channels)
    assert sum(len(c.channel.offline_registers) for c in channels) == 2
    assert len(sample.download_subjobs()) >= 8
    uploads = sample.upload_subjobs()
    assert len(uploads) == 2 and any(s.extension is not None for s in uploads)
    assert all(s.replication_counter for s in uploads)


def test_sample_uses_env_overridable_sqlite_paths(repo_root: Path) -> None:
    text = (repo_root / "topology.yaml").read_text()
    topo = parse_topology(text, environ={"CDX_DATA_DIR": "/data/cdx"})
    assert topo.hq.sqlite_path == "/data/cdx/hq.db"
    assert topo.channel("store-0001") is not None
    assert {d.database.sqlite_path for d in topo.databases()} >= {"/data/cdx/store-0001.db"}
    default = parse_topology(text, environ={})
    assert default.hq.dsn == "sqlite:///.cdx/data/hq.db"
    assert default.kafka.bootstrap_servers == "127.0.0.1:29092"


def test_query_helpers(sample: Topology) -> None:
    inv = sample.subjob_for_hq_table("dbo.INVENTTABLE")
    assert inv is not None and inv.id == "InventTable"
    assert sample.subjob_for_hq_table(TableRef("DBO", "inventtable")) is inv
    assert sample.subjob_for_hq_table("NOSUCHTABLE") is None
    assert [g.id for g in sample.groups_for_subjob(inv)] == ["us-stores", "us-online", "de-stores"]
    assert [g.id for g in sample.groups_for_subjob("RetailTerminalTable")] == ["us-stores", "de-stores"]
    group = sample.group_of_channel("store-1001-pos-01")
    assert group is not None and group.id == "de-stores"
    assert sample.group_of_channel("nope") is None
    cust = sample.subjob("custtable")
    assert cust is not None
    assert ("CUSTGROUP", "CUSTOMERGROUP") in cust.channel_columns()
    assert [j.id for j in sample.jobs_of("DirPartyTable")] == ["1010", "1060"]
    assert all(s.direction is Direction.UPLOAD for s in sample.subjobs_for_group("us-online", Direction.UPLOAD))


def test_databases_have_owners(sample: Topology) -> None:
    dbs = sample.databases()
    assert len(dbs) == 8
    kinds = {d.owner_id: d.kind for d in dbs}
    assert kinds["store-0001-pos-01"] == "offline" and kinds["store-0001"] == "channel"
    reg = next(d for d in dbs if d.owner_id == "store-1001-pos-01")
    assert reg.channel.id == "store-1001" and reg.group.id == "de-stores"
    assert len({d.database.key for d in dbs}) == len(dbs)


def test_channel_filter_values(sample: Topology) -> None:
    chan = sample.subjob("RetailChannelTable")
    assert chan is not None and chan.channel_filter is not None
    assert sample.filter_value(chan, "store-0001") == "5637144576"
    assert sample.filter_value(chan, "store-0001-pos-01") == "5637144576"  # a register filters like its channel
    inv = sample.subjob("InventTable")
    assert inv is not None and sample.filter_value(inv, "store-0001") is None


def test_topics(sample: Topology) -> None:
    assert sample.hq_table_topic("InventTable") == "cdx.hq.dbo.INVENTTABLE"
    assert sample.group_topic("us-stores") == "cdx.group.us-stores"
    assert sample.upload_topic("store-0001") == "cdx.upload.store-0001"
    names = sample.topics()
    assert "cdx._schemas" in names and "cdx._dlq" in names and "cdx._capture_positions" in names
    assert "cdx.upload.online-us" in names
    assert not any(n.startswith("cdx.hq.dbo.RETAILTRANSACTION") for n in names)


def test_models_are_frozen_and_hashable(sample: Topology) -> None:
    with pytest.raises(Exception):  # noqa: B017 - pydantic raises ValidationError on frozen assignment
        sample.jobs[0].id = "x"  # type: ignore[misc]
    assert hash(sample) == hash(load_topology_again(sample))
    assert len({sample.channel("store-0001"), sample.channel("store-0001")}) == 1


def load_topology_again(topo: Topology) -> Topology:
    return validate_topology(topo.model_dump())


def test_model_copy_drops_cached_index(sample: Topology) -> None:
    assert sample.subjob("InventTable") is not None  # builds the index
    trimmed = sample.model_copy(update={"subjobs": sample.subjobs[1:]})
    assert trimmed.subjob("InventTable") is None


def test_summary_lists_everything(sample: Topology) -> None:
    console = Console(record=True, width=160)
    print_summary(sample, console)
    text = console.export_text()
    assert "is valid" in text
    for word in ("us-stores", "de-stores", "us-online", "RetailTerminalTable", "store-1001-pos-01", "P-0001",
                 "MASTER-DATA", "online"):
        assert word in text
    assert len(text.splitlines()) < 50


def test_production_like_fixture(fixtures_dir: Path) -> None:
    env = {"CDX_KAFKA_PASSWORD": "k-secret", "CDX_REGISTRY_PASSWORD": "r", "CDX_HQ_PASSWORD": "h",
           "CDX_STORE_PASSWORD": "s"}
    topo = load_topology(fixtures_dir / "topology" / "production-like.yaml", environ=env)
    assert topo.kafka.client_config()["sasl.password"] == "k-secret"
    assert topo.kafka.client_config()["bootstrap.servers"].count(",") == 2
    assert topo.kafka.security["enable.ssl.certificate.verification"] == "true"
    assert topo.kafka.schema_registry is not None and topo.kafka.schema_registry.config == {
        "basic.auth.user.info": "cdx:r"}
    assert topo.hq.dialect.value == "sqlserver" and "PWD=***" in topo.hq.redacted()
    assert topo.hq_table_topic("InventTable") == "contoso.cdx.axdb.dbo.INVENTTABLE"
    assert [d.database.dialect.value for d in topo.databases()] == ["postgresql", "sqlserver", "postgresql"]
    trans = topo.subjob("RetailTransactionTable")
    assert trans is not None and trans.extension is not None
    assert str(trans.extension.target) == "ext.CONTOSORETAILTRANSACTIONTABLE"
    assert topo.group_of_channel("HOUSTON-11") == topo.group("houston")


def test_production_like_fixture_names_missing_secrets(fixtures_dir: Path) -> None:
    from cdx.topology import TopologyError

    with pytest.raises(TopologyError) as info:
        load_topology(fixtures_dir / "topology" / "production-like.yaml", environ={"CDX_HQ_PASSWORD": "h"})
    missing = sorted(i.message.split()[2] for i in info.value.issues)
    assert missing == ["CDX_KAFKA_PASSWORD", "CDX_REGISTRY_PASSWORD", "CDX_STORE_PASSWORD"]
    assert {i.line for i in info.value.issues} == {13, 18, 49}


def test_many_errors_fixture_reports_each_marked_line(fixtures_dir: Path) -> None:
    from cdx.topology import TopologyError

    path = fixtures_dir / "topology" / "many-errors.yaml"
    with pytest.raises(TopologyError) as info:
        load_topology(path, environ={})
    marked = {n for n, line in enumerate(path.read_text().splitlines(), 1) if "# error" in line}
    marked = {15 if n == 19 else n for n in marked}  # a missing key is reported at its subjob's line
    assert {i.line for i in info.value.issues} == marked
