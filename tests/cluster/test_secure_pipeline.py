"""The whole pipeline on the secured 3-broker cluster (SASL_SSL, SCRAM-SHA-512, StandardAuthorizer, replication
factor 3, ``min.insync.replicas`` 2) with only the ACLs ``cdx kafka apply`` generated: capture, router and HQ
upload sink each log in as their role; one sink process serves all eight channel and register databases and one
upload process all six channels, each channel's clients with that channel's credentials (``kafka.security``
itself is a user without any ACL). The initial sync and a load of HQ changes and sales end with every channel
equal to HQ's scoped view and HQ holding every sale once. Then a channel's password is rotated as
docs/deployment.md describes: the old one is refused, the restarted processes carry on with the new one.
"""

from __future__ import annotations

import logging
import time

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from cdx.infra.kafka.secure import SecureCluster, sasl_client, upsert_scram_users
from tests.cluster.load import Load, run_for, show
from tests.cluster.pipeline import Pipeline, channels_differ, settle, wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.integration, pytest.mark.timeout(2400)]
LOG = logging.getLogger("tests.cluster.secure")


def test_pipeline_runs_with_a_principal_per_role_and_channel(pipeline: Pipeline) -> None:
    started = time.monotonic()
    wait_until(pipeline, lambda: channels_differ(pipeline), 900, "initial sync of every channel and register")
    print(f"\ninitial sync of {len(pipeline.owners)} databases: {time.monotonic() - started:.0f}s")
    load = Load(pipeline).start()
    run_for(30, pipeline)
    load.stop()
    settle(pipeline)
    print(show("secured pipeline, propagation HQ commit -> channel commit", load.probe.samples_ms))
    assert pipeline.sales, "the load wrote no sale"
    assert load.probe.samples_ms and load.probe.lost == 0


def _login_error(cluster: SecureCluster, user: str, password: str) -> KafkaError | None:
    """The error logging in as ``user`` gives (None when the cluster answers)."""
    errors: list[KafkaError] = []
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap, **sasl_client(user, password),
                         **cluster.client_security(), "logger": LOG, "error_cb": errors.append})
    try:
        admin.list_topics(timeout=20)
        return None
    except KafkaException as exc:
        refused = [e for e in errors if e.code() == KafkaError._AUTHENTICATION]
        return refused[0] if refused else errors[0] if errors else exc.args[0]


def test_rotating_a_channels_password(pipeline: Pipeline) -> None:
    cluster, channel = pipeline.cluster, "store-0002"
    old, new = pipeline.passwords[channel], f"{channel}-rotated-{int(time.time())}"
    wait_until(pipeline, lambda: channels_differ(pipeline), 900, "initial sync of every channel and register")
    load = Load(pipeline, seed=2).start()
    try:
        upsert_scram_users(cluster.client_config(), {channel: new})  # kafka-configs.sh --alter --add-config
        deadline = time.monotonic() + 120  # every broker learns the new credential from the metadata log
        while (error := _login_error(cluster, channel, new)) is not None:
            assert time.monotonic() < deadline, f"the new password is not accepted: {error}"
        # the old password is refused (librdkafka reports it as an authentication or a transport failure)
        # while the new one logs in at the same moment: it is the credential, not the cluster
        assert _login_error(cluster, channel, old) is not None
        assert _login_error(cluster, channel, new) is None
        pipeline.passwords[channel] = new
        for role in ("sink", "upload"):  # the processes serving the channel, with the new secret
            pipeline.restart(role)
        run_for(20, pipeline)
    finally:
        load.stop()
    settle(pipeline)
