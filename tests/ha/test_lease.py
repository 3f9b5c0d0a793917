"""The lease itself on the real broker: one holder, a waiting standby that takes over when the holder
leaves, a standby that gives up when told to stop, and the lease topic made on first use."""

from __future__ import annotations

import threading
import uuid

import pytest

from cdx.kafka.admin import partitions_of
from cdx.kafka.config import client_config
from cdx.kafka.lease import Lease, describe_leases

pytestmark = [pytest.mark.integration]


def _lease(kafka: str, prefix: str) -> Lease:
    return Lease(client_config(kafka), f"{prefix}._leases", role="capture", name="hq", prefix=prefix,
                 session_timeout=6.0)


def test_one_holder_and_a_standby_that_takes_over_when_it_leaves(kafka: str) -> None:
    prefix = f"lease{uuid.uuid4().hex[:8]}"
    first, second = _lease(kafka, prefix), _lease(kafka, prefix)
    stop = threading.Event()
    try:
        assert first.acquire(stop) and first.held
        assert partitions_of(client_config(kafka), f"{prefix}._leases") == [0]
        acquired = threading.Event()
        waiter = threading.Thread(target=lambda: second.acquire(stop) and acquired.set(), daemon=True)
        waiter.start()
        group = first.group
        for _ in range(150):
            state = describe_leases(client_config(kafka), [group]).get(group)
            if state is not None and state.active and len(state.standby) == 1:
                break
            stop.wait(0.2)
        assert state is not None and state.active and len(state.standby) == 1, state
        assert not acquired.is_set() and not second.held
        first.release()
        assert acquired.wait(60), "the standby did not take over after the holder left"
        assert second.held and not first.held and not second.lost
    finally:
        stop.set()
        first.release()
        second.release()


def test_a_standby_told_to_stop_gives_up(kafka: str) -> None:
    prefix = f"lease{uuid.uuid4().hex[:8]}"
    holder, standby = _lease(kafka, prefix), _lease(kafka, prefix)
    never, stop = threading.Event(), threading.Event()
    try:
        assert holder.acquire(never)
        threading.Timer(3.0, stop.set).start()
        assert standby.acquire(stop) is False
        assert not standby.held
    finally:
        holder.release()
        standby.release()
