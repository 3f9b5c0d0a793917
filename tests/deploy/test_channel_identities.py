"""Per-channel identities in processes serving many channels, the generated grants they rely on, and the
secured 3-node cluster's settings (no broker started here: ``make test-cluster`` runs them for real)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cdx.cli.main import app
from cdx.connectors.sink.host import SinkHost
from cdx.deploy.acls import READER_GROUPS, desired_acls
from cdx.infra.kafka.launcher import Cluster
from cdx.infra.kafka.secure import AUTHORIZER, SecureCluster
from cdx.topology import load_topology
from cdx.topology.live import LiveTopology, control_config

ROOT = Path(__file__).resolve().parents[2]
PRINCIPALS = """  security: {security.protocol: SASL_SSL, sasl.mechanism: SCRAM-SHA-512, sasl.username: admin,
             sasl.password: "${ADMIN_PW}"}
  principals:
    router: {username: cdx-router, password: "${ROUTER_PW:-}"}
    channels:
      store-0001: {username: store-0001, password: "${PW_0001:-}"}
      store-0002: {username: store-0002, password: "${PW_0002:-}"}
"""


def _topology(tmp_path: Path, **env: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "topology.yaml"
    path.write_text((ROOT / "topology.yaml").read_text().replace(
        "  replication_factor: 1\n", "  replication_factor: 1\n" + PRINCIPALS, 1))
    return load_topology(path, environ={"ADMIN_PW": "admin-pw", **env})


def test_each_channel_logs_in_as_itself_and_shared_clients_as_a_served_channel(tmp_path: Path) -> None:
    topo = _topology(tmp_path, PW_0001="a", PW_0002="b")
    k = topo.kafka
    assert k.security_of("store-0001")["sasl.username"] == "store-0001"
    assert k.security_of("STORE-0002")["sasl.password"] == "b"
    assert k.security_of("store-0002")["security.protocol"] == "SASL_SSL"  # TLS settings stay
    assert k.security_of("store-1001")["sasl.username"] == "admin"  # no identity: kafka.security
    assert k.shared_security(["store-1001", "store-0002", "store-0001"])["sasl.username"] == "store-0002"
    assert k.shared_security(["store-1001"]) == k.security

    host = SinkHost(topo, ["store-0001", "store-0002"])
    assert host.config_of("store-0001")["sasl.username"] == "store-0001"
    assert host.config_of("store-0002")["sasl.username"] == "store-0002"
    assert host.shared_config()["sasl.username"] == "store-0001"


def test_control_clients_of_a_process_of_channels_log_in_as_its_first_channel_by_id(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    topo = _topology(tmp_path, PW_0001="a", PW_0002="b")
    assert control_config(topo, ["store-0002", "STORE-0001"])["sasl.username"] == "store-0001"
    assert control_config(topo, ["store-1001", "store-0002"])["sasl.username"] == "store-0002"  # 1001 has none
    assert control_config(topo, ["store-1001"]) == control_config(topo) == topo.kafka.client_config()
    for key, value in {"ADMIN_PW": "admin-pw", "PW_0001": "a", "PW_0002": "b",
                       "CDX_KAFKA_BOOTSTRAP": "127.0.0.1:1"}.items():  # nothing listens: starts from the file
        monkeypatch.setenv(key, value)
    live = LiveTopology.start(tmp_path / "topology.yaml", "sink", [], serves=lambda t: ["store-0002", "store-0001"])
    try:
        assert live.control_config["sasl.username"] == "store-0001"
        assert live.control_config["bootstrap.servers"] == "127.0.0.1:1"
    finally:
        live.close()


def test_a_process_loads_without_the_passwords_of_channels_it_does_not_serve(tmp_path: Path) -> None:
    topo = _topology(tmp_path, PW_0002="b")
    assert topo.kafka.security_of("store-0002")["sasl.password"] == "b"
    assert topo.kafka.security_of("store-0001")["sasl.password"] == ""


def test_every_principal_may_check_its_topics_and_find_its_readers_coordinator(tmp_path: Path) -> None:
    grants = desired_acls(_topology(tmp_path))
    for who in ("User:cdx-router", "User:store-0001"):
        mine = [g for g in grants if g.principal == who]
        topics = {g.name for g in mine if g.resource == "TOPIC"}
        assert topics == {g.name for g in mine if g.operation == "DESCRIBE_CONFIGS"}
        feed = {("cdx-sink-host", "LITERAL", "DESCRIBE")} if who == "User:store-0001" else set()
        assert {(g.name, g.pattern, g.operation) for g in mine if g.resource == "GROUP" and g.operation == "DESCRIBE"} \
            == {(name, "PREFIXED", "DESCRIBE") for name in READER_GROUPS} | feed


def test_the_secured_three_node_cluster_is_a_real_cluster_with_tls_scram_and_acls() -> None:
    secure, plain = SecureCluster.load(3, users={"store-0001": "pw"}, tls=True), Cluster.load(3)
    assert len(secure.nodes) == 3 and secure.home.name == "sasl-ssl-3"
    ports = {p for n in secure.nodes for p in (n.broker_port, n.controller_port)}
    assert len(ports) == 6 and not ports & {p for n in plain.nodes for p in (n.broker_port, n.controller_port)}
    props = secure._properties(secure.nodes[1])
    for line in (f"advertised.listeners=SASL_SSL://127.0.0.1:{secure.nodes[1].broker_port}",
                 "inter.broker.listener.name=SASL_SSL",
                 "default.replication.factor=3", "min.insync.replicas=2", "sasl.enabled.mechanisms=SCRAM-SHA-512",
                 f"authorizer.class.name={AUTHORIZER}", "allow.everyone.if.no.acl.found=false",
                 "ssl.keystore.type=PEM"):
        assert line in props.splitlines(), line
    assert "name=store-0001,password=pw" in " ".join(secure._format_args())
    assert secure.client_security()["security.protocol"] == "SASL_SSL"


def test_dev_kafka_rejects_an_unknown_security_mode() -> None:
    result = CliRunner().invoke(app, ["dev", "kafka", "status", "--brokers", "3", "--security", "kerberos"])
    assert result.exit_code != 0 and "--security 'kerberos' is not known" in result.output
