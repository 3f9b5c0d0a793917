"""Least privilege on a real broker with SASL_SSL (certificates made for the run), SCRAM-SHA-512 and the
StandardAuthorizer.

``cdx kafka apply`` (as the administrator) creates the topics and each principal's ACLs; then a
channel's own credentials can use its own topics and consumer group, and nothing of another
channel: not B's group topic, not B's upload topic, not B's consumer group or transactional id. A
``cdx sink`` serving two channels starts with only their principals (``kafka.security`` itself logs in
as a user without any ACL): its topology control clients log in as its first channel.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from typer.testing import CliRunner

from cdx.cli.main import app
from cdx.deploy.acls import desired_acls
from cdx.errors import FatalError
from cdx.infra.kafka.secure import ADMIN_PASSWORD, ADMIN_USER, SecureCluster, sasl_client, upsert_scram_users
from cdx.kafka.admin import set_topic_management
from cdx.kafka.config import consumer_config
from cdx.kafka.control import read_role_reports
from cdx.kafka.lease import Lease
from cdx.topics import lease_topic, topology_roles_topic
from cdx.topology import load_topology
from cdx.topology.principals import PRINCIPAL_ENV

pytestmark = pytest.mark.integration
LOG = logging.getLogger("tests.deploy.acls")  # clients' connection lines go to logging, not stderr

ROOT = Path(__file__).resolve().parents[2]
USERS = {"cdx-capture": "capture-pw", "cdx-router": "router-pw", "cdx-hq-upload": "hq-upload-pw",
         "store-0001": "a-pw", "store-1001": "b-pw", "cdx-nobody": "nobody-pw"}
PRINCIPALS = """  manage_topics: false
  security:
    security.protocol: SASL_SSL
    ssl.ca.location: ${CDX_KAFKA_CA}
    sasl.mechanism: SCRAM-SHA-512
    sasl.username: ${CDX_KAFKA_ADMIN_USER}
    sasl.password: ${CDX_KAFKA_ADMIN_PASSWORD}
  principals:
    capture: {username: cdx-capture, password: "${CDX_CAPTURE_PASSWORD}"}
    router: {username: cdx-router, password: "${CDX_ROUTER_PASSWORD}"}
    upload_sink: {username: cdx-hq-upload, password: "${CDX_HQ_UPLOAD_PASSWORD}"}
    channels:
      store-0001: {username: store-0001, password: "${CDX_STORE_0001_PASSWORD}"}
      store-1001: {username: store-1001, password: "${CDX_STORE_1001_PASSWORD}"}
"""


@pytest.fixture(scope="module")
def secure_kafka() -> Iterator[SecureCluster]:
    cluster = SecureCluster.load(tls=True)
    cluster.up(timeout=120)
    upsert_scram_users(cluster.client_config(), USERS)
    yield cluster
    cluster.down()


@pytest.fixture
def topo_file(secure_kafka: SecureCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    env = {"CDX_KAFKA_BOOTSTRAP": secure_kafka.bootstrap, "CDX_TOPIC_PREFIX": f"acl{uuid.uuid4().hex[:8]}",
           "CDX_KAFKA_CA": secure_kafka.ca_file,
           "CDX_KAFKA_ADMIN_USER": ADMIN_USER, "CDX_KAFKA_ADMIN_PASSWORD": ADMIN_PASSWORD,
           "CDX_CAPTURE_PASSWORD": USERS["cdx-capture"], "CDX_ROUTER_PASSWORD": USERS["cdx-router"],
           "CDX_HQ_UPLOAD_PASSWORD": USERS["cdx-hq-upload"], "CDX_STORE_0001_PASSWORD": USERS["store-0001"],
           "CDX_STORE_1001_PASSWORD": USERS["store-1001"]}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    path = tmp_path / "topology.yaml"
    path.write_text((ROOT / "topology.yaml").read_text().replace("  replication_factor: 1\n",
                                                                  "  replication_factor: 1\n" + PRINCIPALS, 1))
    yield path
    set_topic_management(True)


def _apply(topo_file: Path) -> None:
    """``cdx kafka apply`` as the administrator, then wait until the broker enforces the new ACLs."""
    assert CliRunner().invoke(app, ["kafka", "plan", "-t", str(topo_file)]).exit_code == 2
    result = CliRunner().invoke(app, ["kafka", "apply", "-t", str(topo_file)])
    assert result.exit_code == 0, result.output
    deadline = time.monotonic() + 30  # the broker sees new ACLs a moment after the controller took them
    while (result := CliRunner().invoke(app, ["kafka", "plan", "-t", str(topo_file)])).exit_code != 0:
        assert time.monotonic() < deadline, result.output
        time.sleep(0.5)


def _as(cluster: SecureCluster, user: str, **extra: object) -> dict[str, object]:
    return {"bootstrap.servers": cluster.bootstrap, **sasl_client(user, USERS[user]), **cluster.client_security(),
            "logger": LOG, **extra}


def _consume_error(config: dict[str, object], topic: str) -> KafkaError | None:
    """Subscribe and poll until a record or an error arrives; the error (None when a record came)."""
    consumer = Consumer({**config, "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error() is None:
                consumer.commit(msg, asynchronous=False)
                return None
            if msg.error().code() != KafkaError._PARTITION_EOF:
                return msg.error()
        raise AssertionError(f"neither a record nor an error from {topic} within 60 s")
    finally:
        consumer.close()


def _produce_error(config: dict[str, object], topic: str) -> KafkaError | None:
    errors: list[KafkaError | None] = []
    producer = Producer({**config, "enable.idempotence": True, "message.timeout.ms": 30_000})
    producer.produce(topic, b"v", key=b"k", on_delivery=lambda err, _msg: errors.append(err))
    producer.flush(60)
    return errors[0]


def test_a_channel_reaches_only_its_own_topics_group_and_transactional_id(
        secure_kafka: SecureCluster, topo_file: Path) -> None:
    topo = load_topology(topo_file)
    prefix = topo.kafka.topic_prefix
    _apply(topo_file)
    assert len(desired_acls(topo)) > 20

    a_group, b_group = topo.group_topic("us-stores"), topo.group_topic("de-stores")
    admin_producer = Producer({**secure_kafka.client_config(), "logger": LOG})
    for topic in (a_group, b_group):
        admin_producer.produce(topic, b"row", key=b"k")
    admin_producer.flush(30)

    assert _consume_error(_as(secure_kafka, "store-0001", **{"group.id": f"{prefix}-sink-store-0001"}), a_group) \
        is None
    err = _consume_error(_as(secure_kafka, "store-0001", **{"group.id": f"{prefix}-sink-store-0001"}), b_group)
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    err = _consume_error(_as(secure_kafka, "store-0001", **{"group.id": f"{prefix}-sink-store-1001"}), a_group)
    assert err is not None and err.code() == KafkaError.GROUP_AUTHORIZATION_FAILED

    assert _produce_error(_as(secure_kafka, "store-0001"), topo.upload_topic("store-0001")) is None
    err = _produce_error(_as(secure_kafka, "store-0001"), topo.upload_topic("store-1001"))
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    err = _produce_error(_as(secure_kafka, "store-0001"), a_group)
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED

    # A process started with CDX_KAFKA_PRINCIPAL=store-0001 logs in as store-0001 through its topology:
    # the kernel's consumer settings (read_committed, manual commits) read its group topic under its group.
    os.environ[PRINCIPAL_ENV] = "store-0001"
    try:
        as_a = load_topology(topo_file)
    finally:
        del os.environ[PRINCIPAL_ENV]
    assert as_a.kafka.security["sasl.username"] == "store-0001"
    admin_producer.produce(a_group, b"row2", key=b"k2")  # the group committed past the first record above
    admin_producer.flush(30)
    sink_config = consumer_config({**as_a.kafka.client_config(), "logger": LOG}, f"{prefix}-sink-store-0001")
    assert _consume_error(sink_config, a_group) is None
    assert _consume_error(sink_config, b_group).code() == KafkaError.TOPIC_AUTHORIZATION_FAILED  # type: ignore[union-attr]

    own = Producer(_as(secure_kafka, "store-0001", **{"transactional.id": f"{prefix}-upload-store-0001"}))
    own.init_transactions(30)
    other = Producer(_as(secure_kafka, "store-0001", **{"transactional.id": f"{prefix}-upload-store-1001"}))
    with pytest.raises(KafkaException) as denied:
        other.init_transactions(30)
    assert denied.value.args[0].code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED

    # --ha: store-0001's upload can hold its own lease (topic and group granted by `cdx kafka apply`),
    # not store-1001's
    stop = threading.Event()
    own_lease = Lease(_as(secure_kafka, "store-0001"), lease_topic(prefix), role="upload", name="store-0001",
                      prefix=prefix)
    try:
        assert own_lease.acquire(stop)
    finally:
        own_lease.release()
    other_lease = Lease(_as(secure_kafka, "store-0001"), lease_topic(prefix), role="upload", name="store-1001",
                        prefix=prefix)
    try:
        with pytest.raises(FatalError, match="cannot join lease group"):
            other_lease.acquire(stop)
    finally:
        other_lease.release()


def test_a_sink_of_two_channels_starts_with_only_their_principals(
        secure_kafka: SecureCluster, topo_file: Path, tmp_path: Path) -> None:
    """``kafka.security`` is ``cdx-nobody`` (no ACL): the sink's data clients log in as each channel, its
    topology control clients (revisions, role reports) as store-0001, the first of its channels by id."""
    _apply(topo_file)
    topo = load_topology(topo_file)
    env = {**os.environ, "CDX_KAFKA_ADMIN_USER": "cdx-nobody", "CDX_KAFKA_ADMIN_PASSWORD": USERS["cdx-nobody"],
           "CDX_DATA_DIR": str(tmp_path / "data"), "PYTHONUNBUFFERED": "1"}
    env.pop(PRINCIPAL_ENV, None)
    (tmp_path / "data").mkdir()
    log = tmp_path / "sink.log"
    with log.open("w") as out:
        sink = subprocess.Popen([sys.executable, "-m", "cdx.cli.main", "sink", "-t", str(topo_file),
                                 "--channel", "store-1001", "--channel", "store-0001"],
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    roles = topology_roles_topic(topo.kafka.topic_prefix)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert sink.poll() is None, f"cdx sink exited ({sink.returncode}): {log.read_text()}"
            reports = {(r.role, r.instance) for r in read_role_reports(secure_kafka.client_config(), roles, "hq")
                       if r.pid == sink.pid}
            if reports == {("sink", "store-0001"), ("sink", "store-1001")} and "sinking 2 databases" in \
                    log.read_text():
                break
            assert time.monotonic() < deadline, f"reports {reports} after 120 s: {log.read_text()}"
            time.sleep(1)
    finally:
        sink.terminate()
        sink.wait(60)
    assert sink.returncode == 0, log.read_text()
    assert "AUTHORIZATION_FAILED" not in log.read_text()
    assert read_role_reports(secure_kafka.client_config(), roles, "hq") == []  # tombstoned on a clean stop
