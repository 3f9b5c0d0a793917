"""``cdx deploy export``: Deployments round-trip through the Kubernetes client's models; Strimzi
resources carry every topic and each principal's ACLs; systemd units start every process."""

from __future__ import annotations

import configparser
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML
from typer.testing import CliRunner

from cdx.cli.main import app
from cdx.deploy.acls import desired_acls
from cdx.deploy.catalog import desired_topics
from cdx.topology import load_topology

ROOT = Path(__file__).resolve().parents[2]
PRINCIPALS = """  principals:
    capture: {username: cdx-capture, password: x}
    router: {username: cdx-router, password: x}
    upload_sink: {username: cdx-hq-upload, password: x}
    channels:
      store-0001: {username: store-0001, password: x}
      store-0001-pos-01: {username: store-0001-pos-01, password: x}
"""


@pytest.fixture
def topo_file(tmp_path: Path) -> Path:
    path = tmp_path / "topology.yaml"
    path.write_text((ROOT / "topology.yaml").read_text().replace("  replication_factor: 1\n",
                                                                  "  replication_factor: 1\n" + PRINCIPALS, 1))
    return path


def _export(topo_file: Path, out: Path, fmt: str) -> list[Path]:
    result = CliRunner().invoke(app, ["deploy", "export", "-t", str(topo_file), "-f", fmt, "-o", str(out)])
    assert result.exit_code == 0, result.output
    return sorted(out.iterdir())


def _docs(path: Path) -> list[dict[str, Any]]:
    return list(YAML(typ="safe").load_all(path.read_text()))


def test_kubernetes_deployments_round_trip_through_the_client_models(topo_file: Path, tmp_path: Path) -> None:
    from kubernetes.client import ApiClient

    [path] = _export(topo_file, tmp_path / "k8s", "kubernetes")
    docs = _docs(path)
    client = ApiClient()
    names = set()
    for doc in docs:
        model = client._ApiClient__deserialize(doc, "V1Deployment")  # type: ignore[attr-defined]
        assert client.sanitize_for_serialization(model) == doc
        container = model.spec.template.spec.containers[0]
        assert container.liveness_probe.http_get.port == "metrics"
        assert container.ports[0].container_port == int(container.command[container.command.index("--metrics-port")
                                                                           + 1])
        names.add(model.metadata.name)
        if model.metadata.name == "cdx-capture":
            assert [(e.name, e.value) for e in container.env] == [("CDX_KAFKA_PRINCIPAL", "capture")]
    assert {"cdx-capture", "cdx-router", "cdx-hq-upload-sink", "cdx-sink-us-stores", "cdx-upload-us-stores"} <= names


def test_strimzi_resources_hold_every_topic_and_acl(topo_file: Path, tmp_path: Path) -> None:
    [path] = _export(topo_file, tmp_path / "strimzi", "strimzi")
    docs = _docs(path)
    topo = load_topology(topo_file)
    topics = {d["spec"]["topicName"]: d for d in docs if d["kind"] == "KafkaTopic"}
    assert set(topics) == {d.name for d in desired_topics(topo)}
    assert all(len(d["metadata"]["name"]) <= 63 and d["metadata"]["name"].islower() for d in docs)
    users = {d["metadata"]["name"]: d for d in docs if d["kind"] == "KafkaUser"}
    assert set(users) == {"cdx-capture", "cdx-router", "cdx-hq-upload", "store-0001", "store-0001-pos-01"}
    acl_count = sum(len(a["operations"]) for u in users.values() for a in u["spec"]["authorization"]["acls"])
    assert acl_count == len(desired_acls(topo))
    register = users["store-0001-pos-01"]["spec"]["authorization"]["acls"]
    assert {a["resource"]["name"] for a in register if a["resource"]["type"] == "topic"} == {
        topo.group_topic("us-stores"), f"{topo.kafka.topic_prefix}._schemas", f"{topo.kafka.topic_prefix}._dlq"}


def test_systemd_units_start_every_process_on_its_own_metrics_port(topo_file: Path, tmp_path: Path) -> None:
    paths = _export(topo_file, tmp_path / "units", "systemd")
    ports = []
    for path in paths:
        unit = configparser.ConfigParser(strict=True, interpolation=None)
        unit.read_string(path.read_text())
        command = unit["Service"]["ExecStart"].split()
        assert command[0].endswith("/cdx") and unit["Service"]["Restart"] == "always"
        ports.append(command[command.index("--metrics-port") + 1])
    assert len(paths) >= 5 and len(set(ports)) == len(ports)


def test_ha_runs_capture_and_uploads_as_active_and_standby(topo_file: Path, tmp_path: Path) -> None:
    from kubernetes.client import ApiClient

    result = CliRunner().invoke(app, ["deploy", "export", "-t", str(topo_file), "-f", "kubernetes", "--ha",
                                      "-o", str(tmp_path / "k8s")])
    assert result.exit_code == 0, result.output
    [path] = sorted((tmp_path / "k8s").iterdir())
    client = ApiClient()
    paired = set()
    for doc in _docs(path):
        model = client._ApiClient__deserialize(doc, "V1Deployment")  # type: ignore[attr-defined]
        assert client.sanitize_for_serialization(model) == doc
        command = model.spec.template.spec.containers[0].command
        if "--ha" in command:
            assert model.spec.replicas == 2 and model.spec.strategy.rolling_update.max_surge == 0
            assert model.spec.template.spec.affinity.pod_anti_affinity is not None
            paired.add(command[1])
        else:
            assert model.spec.replicas == 1
    assert paired == {"capture", "channel"}
    units = _export_units(topo_file, tmp_path / "units")
    assert any("capture --ha" in text for text in units.values())


def _export_units(topo_file: Path, out: Path) -> dict[str, str]:
    result = CliRunner().invoke(app, ["deploy", "export", "-t", str(topo_file), "-f", "systemd", "--ha", "-o",
                                      str(out)])
    assert result.exit_code == 0, result.output
    return {p.name: p.read_text() for p in out.iterdir()}
