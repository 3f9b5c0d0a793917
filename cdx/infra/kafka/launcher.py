"""A real Apache Kafka (KRaft) on localhost, from the official jars on Maven Central.

- ``ensure_jars()`` resolves ``org.apache.kafka:kafka_2.13`` (version pinned in
  ``pom.xml``) and its dependencies with Maven into ``<state>/kafka/jars-<version>``
  once; later calls download nothing.
- ``up(brokers=1)`` starts a single combined broker/controller (port 29092), or
  ``up(brokers=3)`` a cluster of three combined nodes (ports 29192-29194) whose topic
  defaults are replication factor 3 and min.insync.replicas 2. Storage is formatted
  on first start only. It waits until every broker answers metadata and returns the
  bootstrap servers. Idempotent: running nodes are left alone, dead ones restarted.
- ``down(brokers)`` stops exactly the processes whose pid files it wrote.

Each node keeps ``server.properties``, ``data/``, ``server.log`` and ``kafka.pid`` in
``<state>/kafka/cluster-<n>/node-<id>/``.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from cdx.errors import FatalError
from cdx.infra import process
from cdx.infra.paths import state_dir

HERE = Path(__file__).resolve().parent
POM = HERE / "pom.xml"
LOG4J = HERE / "log4j2.properties"

# Default ports lie below Linux's ephemeral range (32768-60999): a client connection's local port can
# then never occupy one while a node restarts (seen in a test run with ports in the 49000s).
SINGLE_PORT = int(os.environ.get("CDX_KAFKA_PORT", "29092"))
CLUSTER_PORT = int(os.environ.get("CDX_KAFKA_CLUSTER_PORT", "29192"))
# Heap per node: three cluster nodes + one single broker + PostgreSQL + tests stay far below 24 GiB.
HEAP = {1: "768m", 3: "512m"}


class KafkaLauncherError(FatalError, RuntimeError):
    """The launcher could not provide a broker; the message says why and where to look (a ``FatalError``:
    a ``cdx`` command reports it as one ``error:`` line)."""


def kafka_version() -> str:
    match = re.search(r"<kafka.version>([^<]+)</kafka.version>", POM.read_text())
    if not match:
        raise KafkaLauncherError(f"{POM}: no <kafka.version> property")
    return match.group(1)


def ensure_jars(quiet: bool = True) -> Path:
    """Resolve the broker jars once (Maven Central); return the folder holding them."""
    target = state_dir() / "kafka" / f"jars-{kafka_version()}"
    marker = target / ".complete"
    if marker.exists():
        return target
    mvn = shutil.which("mvn")
    if mvn is None:
        raise KafkaLauncherError("Maven (mvn) is needed to fetch the Kafka jars: apt-get install -y maven")
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    argv = [mvn, "-B", "-f", str(POM), "dependency:copy-dependencies", f"-DoutputDirectory={tmp}",
            "-DincludeScope=runtime"]
    if quiet:
        argv.insert(1, "-q")
    print(f"resolving Apache Kafka {kafka_version()} jars from Maven Central into {target} ...", file=sys.stderr)
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        raise KafkaLauncherError(
            f"mvn failed to resolve the Kafka jars:\n{result.stdout[-3000:]}{result.stderr[-2000:]}")
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    marker.write_text(kafka_version())
    return target


@dataclass(frozen=True)
class Node:
    node_id: int
    broker_port: int
    controller_port: int
    home: Path

    @property
    def pid_file(self) -> Path:
        return self.home / "kafka.pid"

    @property
    def log_file(self) -> Path:
        return self.home / "server.log"

    @property
    def config_file(self) -> Path:
        return self.home / "server.properties"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.broker_port}"

    def pid(self) -> int | None:
        return process.read_pid(self.pid_file)


def nodes(size: int, name: str, port: int) -> tuple[Node, ...]:
    """The ``size`` nodes of the cluster kept in ``<state>/kafka/<name>-<size>``: broker ports from ``port``,
    controller ports from ``port + 50``."""
    if size not in HEAP:
        raise KafkaLauncherError(f"--brokers must be 1 or 3 (got {size})")
    home = state_dir() / "kafka" / f"{name}-{size}"
    return tuple(Node(node_id=i + 1, broker_port=port + i, controller_port=port + 50 + i, home=home / f"node-{i + 1}")
                 for i in range(size))


@dataclass(frozen=True)
class Cluster:
    """A local cluster of ``size`` combined broker/controller nodes."""

    size: int
    nodes: tuple[Node, ...]

    @classmethod
    def load(cls, size: int) -> Cluster:
        return cls(size=size, nodes=nodes(size, "cluster", SINGLE_PORT if size == 1 else CLUSTER_PORT))

    @property
    def home(self) -> Path:
        return self.nodes[0].home.parent

    @property
    def bootstrap(self) -> str:
        return ",".join(n.address for n in self.nodes)

    def node(self, node_id: int) -> Node:
        return self.nodes[node_id - 1]

    # ------------------------------------------------------------------ config
    def _properties(self, node: Node) -> str:
        rf = min(3, self.size)
        voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self.nodes)
        return "\n".join([
            "# written by cdx cdx/infra/kafka/launcher.py",
            "process.roles=broker,controller",
            f"node.id={node.node_id}",
            f"controller.quorum.voters={voters}",
            f"listeners=PLAINTEXT://127.0.0.1:{node.broker_port},CONTROLLER://127.0.0.1:{node.controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{node.broker_port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            f"log.dirs={node.data_dir}",
            "num.partitions=1",
            f"default.replication.factor={rf}",
            f"min.insync.replicas={min(2, rf)}",
            f"offsets.topic.replication.factor={rf}",
            "offsets.topic.num.partitions=10",
            f"transaction.state.log.replication.factor={rf}",
            f"transaction.state.log.min.isr={min(2, rf)}",
            "transaction.state.log.num.partitions=10",
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=false",
            "num.network.threads=2",
            "num.io.threads=4",
            "background.threads=4",
            "num.recovery.threads.per.data.dir=1",
            "log.cleaner.threads=1",
            "log.cleaner.backoff.ms=1000",
            "share.coordinator.state.topic.replication.factor=" + str(rf),
            "share.coordinator.state.topic.min.isr=" + str(min(2, rf)),
            "",
        ])

    def _format_args(self) -> list[str]:
        """Extra ``kafka-storage format`` arguments (the secured cluster adds its SCRAM users)."""
        return []

    def client_config(self) -> dict[str, str]:
        """What a client needs to reach this cluster as its administrator."""
        return {"bootstrap.servers": self.bootstrap}

    def _cluster_id(self) -> str:
        id_file = self.home / "cluster.id"
        if not id_file.exists():
            id_file.parent.mkdir(parents=True, exist_ok=True)
            id_file.write_text(base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode())
        return id_file.read_text().strip()

    def _java(self, jars: Path, main: str, *args: str, heap: str = "256m") -> list[str]:
        java = shutil.which("java")
        if java is None:
            raise KafkaLauncherError(
                "Java 17 is needed to run the Kafka broker: apt-get install -y openjdk-17-jre-headless")
        return [java, f"-Xmx{heap}", f"-Xms{heap}" if heap == "256m" else "-Xms128m", "-XX:+UseG1GC",
                "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={LOG4J}", "-cp", f"{jars}/*", main, *args]

    # --------------------------------------------------------------- lifecycle
    def start_node(self, node: Node, jars: Path) -> None:
        """Start one node (formatting its storage the first time). No-op if it runs."""
        if node.pid() is not None:
            return
        for port in (node.broker_port, node.controller_port):
            if _port_open(port):
                raise KafkaLauncherError(
                    f"port {port} is in use by a process this launcher did not start (no live pid in "
                    f"{node.pid_file}); stop it, or choose other ports with CDX_KAFKA_PORT / CDX_KAFKA_CLUSTER_PORT")
        node.home.mkdir(parents=True, exist_ok=True)
        node.config_file.write_text(self._properties(node))
        if not (node.data_dir / "meta.properties").exists():
            shutil.rmtree(node.data_dir, ignore_errors=True)
            fmt = self._java(jars, "kafka.tools.StorageTool", "format", f"--cluster-id={self._cluster_id()}",
                             "-c", str(node.config_file), *self._format_args())
            result = subprocess.run(fmt, capture_output=True, text=True)
            if result.returncode != 0:
                raise KafkaLauncherError(f"formatting KRaft storage of node {node.node_id} failed:\n"
                                         f"{result.stdout}{result.stderr}")
        argv = self._java(jars, "kafka.Kafka", str(node.config_file), heap=HEAP[self.size])
        process.spawn(argv, log_file=node.log_file, pid_file=node.pid_file)

    def up(self, timeout: float = 90.0) -> str:
        jars = ensure_jars()
        for node in self.nodes:
            self.start_node(node, jars)
        self.wait_ready(timeout)
        return self.bootstrap

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Wait until every node accepts connections and the cluster reports all brokers."""
        from confluent_kafka.admin import AdminClient

        deadline = time.monotonic() + timeout
        last_error = "no answer yet"
        admin = None
        while time.monotonic() < deadline:
            for node in self.nodes:
                if node.pid() is None:
                    raise KafkaLauncherError(f"Kafka node {node.node_id} exited during start; see {node.log_file}")
            if not all(_port_open(n.broker_port) for n in self.nodes):
                time.sleep(0.2)
                continue
            if admin is None:
                admin = AdminClient({**self.client_config(), "log_level": 0})
            try:
                md = admin.list_topics(timeout=3)
                if len(md.brokers) == self.size:
                    return
                last_error = f"{len(md.brokers)} of {self.size} brokers registered"
            except Exception as exc:  # the broker is still starting
                last_error = str(exc)
            time.sleep(0.3)
        raise KafkaLauncherError(f"Kafka did not answer within {timeout:.0f}s ({last_error}); logs: "
                                 + ", ".join(str(n.log_file) for n in self.nodes))

    def down(self) -> list[int]:
        """Stop every node this launcher started (by pid file). Returns the node ids stopped."""
        stopped = []
        for node in reversed(self.nodes):
            if process.stop(node.pid_file, timeout=30):
                stopped.append(node.node_id)
        return stopped

    def kill9(self, node_id: int) -> int | None:
        """Crash injection: SIGKILL one node by its pid file; returns the pid killed."""
        return process.kill9(self.node(node_id).pid_file)

    def status(self) -> list[dict[str, object]]:
        return [{"node": n.node_id, "address": n.address, "pid": n.pid(), "running": n.pid() is not None,
                 "log": str(n.log_file)} for n in self.nodes]


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def up(brokers: int = 1, timeout: float = 90.0) -> str:
    """Start (or reuse) the local cluster of ``brokers`` nodes; return bootstrap servers."""
    return Cluster.load(brokers).up(timeout)


def down(brokers: int = 1) -> list[int]:
    return Cluster.load(brokers).down()
