"""The desired-topic catalog names every topic the roles create, with the same names."""

from __future__ import annotations

from pathlib import Path

from cdx import topics
from cdx.connectors.upload.acks import dlq_acks_topic
from cdx.connectors.upload.plan import upload_positions_topic
from cdx.deploy.catalog import desired_topics, min_insync_replicas
from cdx.topology import load_topology

ROOT = Path(__file__).resolve().parents[2]


def test_role_topic_helpers_agree_with_cdx_topics() -> None:
    for role_helper, kernel_helper in ((dlq_acks_topic, topics.dlq_acks_topic),
                                       (upload_positions_topic, topics.upload_positions_topic)):
        assert role_helper("cdx") == kernel_helper("cdx")


def test_catalog_covers_every_topic_of_the_topology() -> None:
    topo = load_topology(ROOT / "topology.yaml", environ={})
    catalog = {d.name: d for d in desired_topics(topo)}
    assert set(topo.topics()) <= set(catalog)
    assert {d.kind for d in catalog.values()} == {"table", "group", "upload", "state", "dead-letter"}
    assert catalog["cdx._dlq"].spec.configs["retention.ms"] == "-1"
    assert all(d.spec.configs.get("cleanup.policy") == "compact" for d in catalog.values()
               if d.kind in ("table", "group", "state"))


def test_min_insync_replicas_leaves_room_for_one_broker_down() -> None:
    assert [min_insync_replicas(rf) for rf in (1, 2, 3, 5)] == [1, 1, 2, 2]


def test_cdx_kafka_principal_picks_the_identity_of_kafka_principals(tmp_path: Path) -> None:
    import pytest

    from cdx.errors import ConfigError

    path = tmp_path / "topology.yaml"
    path.write_text((ROOT / "topology.yaml").read_text().replace(
        "  replication_factor: 1\n", "  replication_factor: 1\n  principals:\n    channels:\n"
        "      store-0001: {username: store-0001, password: \"${PW}\"}\n", 1))
    topo = load_topology(path, environ={"PW": "s3cret", "CDX_KAFKA_PRINCIPAL": "STORE-0001"})
    assert topo.kafka.security["sasl.username"] == "store-0001"
    assert topo.kafka.security["sasl.password"] == "s3cret"
    assert topo.kafka.security["sasl.mechanism"] == "SCRAM-SHA-512"
    assert "sasl.username" not in load_topology(path, environ={"PW": "s3cret"}).kafka.security
    with pytest.raises(ConfigError, match=r"CDX_KAFKA_PRINCIPAL=router: kafka.principals has no such identity"
                                          r" \(known: store-0001\)"):
        load_topology(path, environ={"PW": "s3cret", "CDX_KAFKA_PRINCIPAL": "router"})
