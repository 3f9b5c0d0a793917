"""The secured 3-broker cluster (SASL_SSL, SCRAM-SHA-512, StandardAuthorizer) for the ``cluster`` tests,
and the whole pipeline running on it (see ``tests.cluster.pipeline``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cdx.infra.kafka.secure import SecureCluster, upsert_scram_users
from tests.cluster.pipeline import Pipeline, cluster_users, owner_ids, start_pipeline, stop_pipeline


@pytest.fixture(scope="session")
def secure_cluster() -> Iterator[SecureCluster]:
    """Started once (users created at format time; upserted too when the storage existed), stopped at the end:
    three JVMs are a lot for a shared machine."""
    users = cluster_users(owner_ids())
    cluster = SecureCluster.load(3, users=users, tls=True)
    cluster.up(timeout=900)
    upsert_scram_users(cluster.client_config(), users)
    yield cluster
    cluster.down()


@pytest.fixture(scope="session")
def pipeline(secure_cluster: SecureCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    """Every role running on the secured cluster (fresh topics and databases; one initial sync for the suite)."""
    state: Path = tmp_path_factory.mktemp("cluster")
    pipe = start_pipeline(secure_cluster, state)
    yield pipe
    stop_pipeline(pipe)
