"""Channels are in no consumer group (the host's shared consumer ``assign()``s partitions; positions live
in the channel databases): a consumer that joins the channel's old group with the old static member id
(as a sink of an older version, or after a session timeout on an overloaded broker, would) neither
fences nor disturbs the sink: nothing lost, nothing applied twice."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer

from cdx.kafka.config import client_config, consumer_config
from tests.sink.helpers import FakeRouter, assert_tables_equal, expected_state, sqlite_db, wait_until, workload
from tests.sink.helpers import write_topology as sink_topology
from tests.sink.test_sink_workload import caught_up

pytestmark = pytest.mark.integration


def test_a_consumer_in_the_channel_group_does_not_disturb_the_sink(tmp_path: Path, kafka: str, run_host) -> None:
    c1 = sqlite_db(tmp_path, "c1", recid=1)
    _, topo = sink_topology(tmp_path, kafka, [c1])
    router = FakeRouter(topo)
    workload(router, 500, seed=5, keys=200)
    router.flush()
    host = run_host(topo)
    sink = host.sinks[0]
    wait_until(lambda: caught_up(host, router), 60, "the sink to catch up")

    group = sink.spec.consumer_group
    intruder = Consumer({**consumer_config(client_config(kafka), group), "group.instance.id": group,
                         "session.timeout.ms": 6000})
    intruder.subscribe([router.topic])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        intruder.poll(0.2)
    workload(router, 500, seed=6, keys=200)
    router.flush()
    wait_until(lambda: caught_up(host, router), 90, "the sink to apply beside a member of its old group",
               lambda: f"{sink.status} {sink.last_error} {sink.state.offsets} {router.ends()}")
    intruder.close()
    assert sink.status == "running", sink.last_error
    assert sink.consumer_restarts == 0
    assert_tables_equal(c1, expected_state(router.sent, recid=1))
