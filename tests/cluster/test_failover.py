"""Broker failover under load: the whole secured pipeline on the 3-broker cluster (replication factor 3,
``min.insync.replicas`` 2, every role with its own principal and only its generated ACLs).

- kill -9 the broker leading most of the busiest partitions, keep the load on while it is dead, restart it,
  wait until every partition is fully in sync again; five times;
- a controlled rolling restart (SIGTERM, restart, in sync) of all three brokers.

Each ends with every channel and register equal to HQ's scoped view and HQ holding every sale once. A role
that exits meanwhile is started again, as its supervisor would (systemd ``Restart=always``, a Kubernetes
Deployment), and listed with the figures: the router stops when its transaction is fenced, which a broker
restart can cause (the transaction coordinator moves and bumps the producer epoch). The
figures (printed; run with ``-s``): propagation HQ commit -> channel commit of the probes before the first
failure (the same run's baseline), of the whole run, and per failure the slowest probe committed between the
kill (or stop) and the moment the cluster was fully in sync again: the pause that failure caused.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

import pytest

from cdx.infra.kafka.secure import SecureCluster
from tests.cluster import brokers
from tests.cluster.load import PROBE_CHANNEL, Load, run_for, show
from tests.cluster.pipeline import Pipeline, channels_differ, restart_dead, settle, wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.integration, pytest.mark.timeout(7200)]

KILLS = int(os.environ.get("CDX_TEST_KILLS", "5"))
"""kill -9 rounds (5; fewer only to get figures quickly on a crowded machine)."""
BASELINE_S = 60.0
DOWN_S = 10.0
AFTER_S = 5.0


@pytest.fixture
def synced(pipeline: Pipeline, secure_cluster: SecureCluster) -> Iterator[Pipeline]:
    wait_until(pipeline, lambda: channels_differ(pipeline), 600, "initial sync of every channel and register")
    yield pipeline
    secure_cluster.up(timeout=900)  # a failed test must not leave a broker down for the next


def _under_failures(pipe: Pipeline, failures: int, fail: Callable[[int], tuple[str, Callable[[], None]]]) -> None:
    """Load; a baseline; then ``failures`` times: ``fail(i)`` (returns a label and how to recover), load while
    it lasts, recover, wait in sync. Stop the load, settle, print the figures."""
    load = Load(pipe).start()
    t0 = time.perf_counter()
    run_for(BASELINE_S, pipe)
    events: list[tuple[str, float, float, float]] = []
    restarted: list[str] = []
    try:
        for i in range(failures):
            started = time.perf_counter()
            label, recover = fail(i)
            run_for(DOWN_S, pipe, restarted)
            recover()
            in_sync = brokers.wait_in_sync(pipe.cluster, timeout=1200, tick=lambda: restart_dead(pipe, restarted))
            events.append((label, started, time.perf_counter(), in_sync))
            print(f"\n{_event_line(load, events[-1])}; restarted so far: {restarted}", flush=True)
            run_for(AFTER_S, pipe, restarted)
    finally:
        load.stop()
    lines = [show("baseline (before the first failure)", load.probe.window(t0, events[0][1] if events else t0)),
             show("whole run", load.probe.samples_ms)] + [_event_line(load, e) for e in events]
    print("\n" + "\n".join(lines), flush=True)  # before settling: a failed settle still shows the figures
    settling = time.perf_counter()
    settle(pipe, supervise=restarted)
    print(f"settled (every channel equal to HQ, every sale at HQ once) {time.perf_counter() - settling:.0f}s after"
          " the load stopped\n" + "\n".join([f"restarted by the supervisor: {r}" for r in restarted]
                                              or ["no process exited"]), flush=True)
    assert load.probe.lost == 0, f"{load.probe.lost} probes did not reach {PROBE_CHANNEL} within 300 s"


def _event_line(load: Load, event: tuple[str, float, float, float]) -> str:
    """One failure's figures: the probes committed between the kill (or stop) and all replicas in sync."""
    label, start, end, in_sync = event
    meanwhile = show("probes meanwhile", load.probe.window(start - 1, end))
    return f"{label}: back in sync {in_sync:.0f}s after restart; {meanwhile}"


def test_kill9_of_the_busiest_partitions_leader_five_times_under_load(synced: Pipeline) -> None:
    cluster, prefix = synced.cluster, synced.env.topology.kafka.topic_prefix

    def kill(i: int) -> tuple[str, Callable[[], None]]:
        node, partitions = brokers.busiest_leader(cluster, prefix)
        cluster.kill9(node)
        return (f"kill -9 #{i + 1} of node {node} (leader of {', '.join(partitions[:3])}...)",
                lambda: brokers.restart(cluster, node))

    _under_failures(synced, KILLS, kill)


def test_rolling_restart_of_all_three_brokers_under_load(synced: Pipeline) -> None:
    cluster = synced.cluster

    def stop(i: int) -> tuple[str, Callable[[], None]]:
        node = i + 1
        brokers.stop_gracefully(cluster, node)
        return f"rolling restart of node {node}", lambda: brokers.restart(cluster, node)

    _under_failures(synced, 3, stop)
