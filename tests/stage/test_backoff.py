"""The one back-off policy: doubling, capped, reset on success, interruptible."""

from __future__ import annotations

import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdx.stage.backoff import Backoff


def test_doubles_up_to_the_maximum_and_resets() -> None:
    b = Backoff(initial=0.5, maximum=3, jitter=0)
    assert [b.next() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert b.attempts == 5
    b.reset()
    assert b.next() == 0.5 and b.attempts == 1


@given(st.floats(0.01, 5), st.floats(1, 60), st.integers(1, 30))
def test_delays_stay_within_bounds(initial: float, extra: float, n: int) -> None:
    b = Backoff(initial=initial, maximum=initial + extra)
    for _ in range(n):
        d = b.next()
        assert initial <= d <= (initial + extra) * 1.1 + 1e-9


def test_wait_returns_at_once_when_stopped() -> None:
    stop = threading.Event()
    stop.set()
    t0 = time.monotonic()
    assert Backoff(initial=10, maximum=10).wait(stop) is True
    assert time.monotonic() - t0 < 1


def test_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        Backoff(initial=0)
    with pytest.raises(ValueError):
        Backoff(initial=5, maximum=1)
