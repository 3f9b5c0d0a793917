"""Shared fixtures: real Kafka, real PostgreSQL, SQLite files, unique topics.

Kafka, in order of preference: ``$CDX_TEST_KAFKA`` (bootstrap servers of an existing
cluster); a testcontainers KRaft container when a Docker engine answers a ping; else
the local launcher (``cdx.infra.kafka``), started once per test session and left running.
PostgreSQL: ``cdx.infra.postgres.launcher.up()`` (``$CDX_PG_DSN`` or a private cluster); each
test module gets a fresh database.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest


def _docker_answers() -> bool:
    try:
        import docker  # type: ignore[import-not-found]

        docker.from_env(timeout=2).ping()
        return True
    except Exception:
        return False


def prestart() -> None:
    """Start what the session fixtures below would start: the local Kafka broker (unless
    ``$CDX_TEST_KAFKA`` is set or a Docker engine answers) and PostgreSQL, both idempotent.
    ``make test`` runs this in the background while lint runs; it must finish before pytest starts."""
    from cdx.infra.postgres import launcher as pg

    if not os.environ.get("CDX_TEST_KAFKA") and not _docker_answers():
        from cdx.infra.kafka import launcher

        launcher.up(brokers=1)
    pg.up()


@pytest.fixture(scope="session")
def docker_available() -> bool:
    return _docker_answers()


@pytest.fixture(scope="session")
def kafka(docker_available: bool) -> Iterator[str]:
    """Bootstrap servers of a running single-broker (or external) Kafka."""
    env = os.environ.get("CDX_TEST_KAFKA")
    if env:
        yield env
        return
    if docker_available:
        from testcontainers.kafka import KafkaContainer  # type: ignore[import-not-found]

        with KafkaContainer().with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    from cdx.infra.kafka import launcher

    yield launcher.up(brokers=1)


@pytest.fixture(scope="session")
def kafka_cluster() -> Any:
    """The local 3-broker cluster (an ``cdx.infra.kafka.launcher.Cluster``), started once.

    Tests may kill brokers; they must bring them back with ``cluster.up()``.
    """
    from cdx.infra.kafka import launcher

    cluster = launcher.Cluster.load(3)
    cluster.up()
    return cluster


@pytest.fixture(scope="session")
def postgres_server() -> str:
    from cdx.infra.postgres import launcher

    return launcher.up()


@pytest.fixture(scope="module")
def postgres(postgres_server: str, request: pytest.FixtureRequest) -> str:
    """DSN of a fresh, empty PostgreSQL database for this test module."""
    from cdx.infra.postgres import launcher

    base = re.sub(r"[^a-z0-9_]", "_", request.module.__name__.lower())[-40:]
    name = f"t_{base}_{uuid.uuid4().hex[:6]}"
    return launcher.create_database(postgres_server, name)


@pytest.fixture
def sqlite(tmp_path: Path) -> Path:
    """Path of a fresh SQLite database file (created on first connect)."""
    return tmp_path / "test.db"


@pytest.fixture
def topic_factory(kafka: str) -> Callable[..., str]:
    """Create a uniquely named topic: ``topic_factory(partitions=1, compact=False, **configs)``."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": kafka})

    def make(prefix: str = "t", partitions: int = 1, compact: bool = False, **configs: str) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        cfg = dict(configs)
        if compact:
            cfg["cleanup.policy"] = "compact"
        fut = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1, config=cfg)])
        fut[name].result(30)
        return name

    return make


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("CDX_TEST_SQLSERVER_DSN") or _docker_answers():
        return
    skip = pytest.mark.skip(reason="SQL Server tests need CDX_TEST_SQLSERVER_DSN (a pyodbc connection string)"
                                   " or a running Docker engine; set one to enable them")
    for item in items:
        if "sqlserver" in item.keywords:
            item.add_marker(skip)
