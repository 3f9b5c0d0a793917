"""``cdx kafka plan`` / ``apply`` and ``kafka.manage_topics: false`` against the real local broker."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic
from typer.testing import CliRunner

from cdx.cli.main import app
from cdx.deploy.catalog import desired_topics
from cdx.errors import FatalError
from cdx.kafka.admin import set_topic_management, topic_management
from cdx.kafka.topicstate import describe_topics
from cdx.streams.router import ensure_router_topics
from cdx.streams.routing import RoutingPlan
from cdx.topology import load_topology

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


@pytest.fixture
def topo_file(kafka: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The sample topology under a fresh topic prefix, on the test broker."""
    monkeypatch.setenv("CDX_KAFKA_BOOTSTRAP", kafka)
    monkeypatch.setenv("CDX_TOPIC_PREFIX", f"kp{uuid.uuid4().hex[:8]}")
    path = tmp_path / "topology.yaml"
    path.write_text((ROOT / "topology.yaml").read_text())
    yield path
    set_topic_management(True)


def _cdx(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_plan_apply_converges_and_prunes_only_when_asked(kafka: str, topo_file: Path) -> None:
    topo = load_topology(topo_file)
    prefix = topo.kafka.topic_prefix
    desired = desired_topics(topo)
    code, out = _cdx("kafka", "plan", "-t", str(topo_file))
    assert code == 2, out
    assert out.count("+ create") == len(desired)
    code, out = _cdx("kafka", "apply", "-t", str(topo_file))
    assert code == 0, out
    assert _cdx("kafka", "plan", "-t", str(topo_file))[0] == 0
    assert _cdx("kafka", "apply", "-t", str(topo_file)) == (0, _cdx("kafka", "apply", "-t", str(topo_file))[1])

    admin = AdminClient({"bootstrap.servers": kafka})
    dlq = f"{prefix}._dlq"
    entry = ConfigEntry("retention.ms", "60000", incremental_operation=AlterConfigOpType.SET)
    for future in admin.incremental_alter_configs(
            [ConfigResource(ConfigResource.Type.TOPIC, dlq, incremental_configs=[entry])]).values():
        future.result(30)
    assert _eventually(lambda: describe_topics(admin, {}, [dlq])[dlq].configs["retention.ms"] == "60000")
    extra = f"{prefix}.group.closed-stores"
    admin.create_topics([NewTopic(extra, 1, 1)])[extra].result(30)
    assert _eventually(lambda: extra in describe_topics(admin, {}, [extra]))

    code, out = _cdx("kafka", "plan", "-t", str(topo_file))
    assert code == 2, out
    assert f"~ configure {dlq}" in out and "retention.ms: 60000 -> -1" in out
    assert f"- extra {extra}" in out
    code, out = _cdx("kafka", "apply", "-t", str(topo_file))
    assert code == 0, out
    state = describe_topics(admin, {}, [dlq, extra])
    assert state[dlq].configs["retention.ms"] == "-1"
    assert extra in state, "apply without --prune deleted a topic"
    code, out = _cdx("kafka", "plan", "-t", str(topo_file))
    assert code == 2 and "configure" not in out and extra in out
    code, out = _cdx("kafka", "apply", "--prune", "-t", str(topo_file))
    assert code == 0 and f"- delete {extra}" in out
    assert _eventually(lambda: extra not in admin.list_topics(timeout=10).topics)
    assert _cdx("kafka", "plan", "-t", str(topo_file))[0] == 0


def test_partition_increase_is_applied_and_decrease_is_reported(kafka: str, topo_file: Path) -> None:
    topo = load_topology(topo_file)
    assert topo.kafka.default_partitions == 3
    fewer, more = topo.group_topic("us-stores"), topo.group_topic("de-stores")
    admin = AdminClient({"bootstrap.servers": kafka})
    for name, parts in ((fewer, 1), (more, 5)):
        admin.create_topics([NewTopic(name, parts, 1, config={"cleanup.policy": "compact"})])[name].result(30)
    code, out = _cdx("kafka", "plan", "-t", str(topo_file))
    assert code == 2
    assert f"~ partitions {fewer}" in out and "partitions 1 -> 3" in out
    assert f"! manual {more}" in out and "cannot remove partitions" in out
    code, out = _cdx("kafka", "apply", "-t", str(topo_file))
    assert code == 1, out
    assert _eventually(lambda: describe_topics(admin, {}, [fewer])[fewer].partitions == 3)
    assert describe_topics(admin, {}, [more])[more].partitions == 5


def test_roles_only_verify_topics_when_manage_topics_is_false(kafka: str, topo_file: Path) -> None:
    topo_file.write_text(topo_file.read_text().replace("  replication_factor: 1\n",
                                                       "  replication_factor: 1\n  manage_topics: false\n", 1))
    topo = load_topology(topo_file)
    assert topic_management() is False
    with pytest.raises(FatalError, match=r"does not exist.*run `cdx kafka apply`"):
        ensure_router_topics(topo, RoutingPlan(topo))
    assert describe_topics(AdminClient({"bootstrap.servers": kafka}), {}, [topo.group_topic("us-stores")]) == {}

    assert _cdx("kafka", "apply", "-t", str(topo_file))[0] == 0
    ensure_router_topics(topo, RoutingPlan(topo))  # now every topic is there with the expected settings

    admin = AdminClient({"bootstrap.servers": kafka})
    entry = ConfigEntry("cleanup.policy", "delete", incremental_operation=AlterConfigOpType.SET)
    resource = ConfigResource(ConfigResource.Type.TOPIC, topo.group_topic("us-stores"), incremental_configs=[entry])
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(30)
    group = topo.group_topic("us-stores")
    assert _eventually(lambda: describe_topics(admin, {}, [group])[group].configs["cleanup.policy"] == "delete")
    with pytest.raises(FatalError, match=r"cleanup.policy=delete, compact expected"):
        ensure_router_topics(topo, RoutingPlan(topo))


def _eventually(check: Callable[[], bool], timeout: float = 30.0) -> bool:
    """Metadata reaches every broker a moment after an admin call returns: poll ``check``."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True
