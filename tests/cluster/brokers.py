"""Broker operations on the secured 3-node cluster: find the leader of the busiest partitions, kill -9 it,
restart it, stop it gracefully, and wait until every partition has all three replicas in sync again."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from cdx.infra import process
from cdx.infra.kafka.launcher import ensure_jars
from cdx.infra.kafka.secure import SecureCluster

LOG = logging.getLogger("tests.cluster.brokers")


def _admin(cluster: SecureCluster) -> AdminClient:
    return AdminClient({**cluster.client_config(), "logger": LOG})


def busiest_leader(cluster: SecureCluster, prefix: str, top: int = 12) -> tuple[int, list[str]]:
    """The broker leading most of the ``top`` partitions with the most records among the pipeline's topics
    (``<prefix>.*``), and those partitions (``topic[partition]``)."""
    md = _admin(cluster).list_topics(timeout=30)
    consumer = Consumer({**cluster.client_config(), "group.id": "cdx-test-watermarks", "logger": LOG})
    try:
        sizes = []
        for name, topic in md.topics.items():
            if not name.startswith(prefix + "."):
                continue
            for pid, part in topic.partitions.items():
                low, high = consumer.get_watermark_offsets(TopicPartition(name, pid), timeout=10, cached=False)
                sizes.append((high - low, f"{name}[{pid}]", part.leader))
    finally:
        consumer.close()
    busiest = sorted(sizes, reverse=True)[:top]
    leaders = Counter(leader for _, _, leader in busiest if leader >= 0)
    return leaders.most_common(1)[0][0], [name for _, name, _ in busiest]


def under_replicated(cluster: SecureCluster) -> list[str]:
    """Partitions (of every topic, internal ones included) with fewer than three in-sync replicas."""
    md = _admin(cluster).list_topics(timeout=30)
    return [f"{name}[{pid}]" for name, topic in md.topics.items() for pid, part in topic.partitions.items()
            if len(part.isrs) < cluster.size or part.leader < 0]


def wait_in_sync(cluster: SecureCluster, timeout: float = 300, tick: Callable[[], None] = lambda: None) -> float:
    """Block until every node runs and no partition is under-replicated; the seconds it took. ``tick()``
    is called about every second meanwhile (the test's supervisor restarting roles that exited)."""
    started = time.monotonic()
    cluster.wait_ready(timeout)
    lagging: list[str] = ["not checked"]
    while time.monotonic() - started < timeout:
        tick()
        try:
            lagging = under_replicated(cluster)
        except Exception as exc:  # metadata not answerable while a controller moves
            lagging = [str(exc)]
        if not lagging:
            return time.monotonic() - started
        time.sleep(1)
    raise AssertionError(f"partitions still under-replicated after {timeout:.0f}s: {lagging[:10]}")


def restart(cluster: SecureCluster, node_id: int) -> None:
    """Start a stopped (or killed) node again."""
    cluster.start_node(cluster.node(node_id), ensure_jars())


def stop_gracefully(cluster: SecureCluster, node_id: int) -> None:
    """SIGTERM: a controlled shutdown (leaderships move away before the node exits)."""
    assert process.stop(cluster.node(node_id).pid_file, timeout=120), f"node {node_id} was not running"
