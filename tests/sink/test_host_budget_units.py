"""A host with many channels spreads their idle housekeeping, and each channel's SQLite lease grows with its
idle tick, so a lease always outlives three housekeeping steps."""

from __future__ import annotations

import pytest

from cdx.codec import SchemaStore, SingleObjectCodec
from cdx.connectors.sink.host import HOUSEKEEPING_PER_SECOND, budgeted
from cdx.connectors.sink.lock import LEASE_SECONDS, RENEW_SHARE
from cdx.connectors.sink.runner import ChannelSink, SinkSettings
from cdx.connectors.sink.spec import SinkSpec


def _sink(settings: SinkSettings) -> ChannelSink:
    spec = SinkSpec("c1", "channel", "c1", "g1", "sqlite", "sqlite:///x.db", "t.group.g1", "p-sink-c1")
    return ChannelSink(spec, {}, SingleObjectCodec(SchemaStore()), None, settings)  # type: ignore[arg-type]


def test_idle_tick_and_lease_grow_with_the_channels() -> None:
    few, many = budgeted(SinkSettings(), 10), budgeted(SinkSettings(), 1000)
    assert few.idle_tick == SinkSettings().idle_tick
    assert many.idle_tick == 1000 / HOUSEKEEPING_PER_SECOND
    assert _sink(few).lock.lease == LEASE_SECONDS
    lease = _sink(many).lock.lease
    assert lease >= 3 * many.idle_tick and lease * RENEW_SHARE <= many.idle_tick  # renewed at each step


def test_a_host_thread_is_joined_until_it_ends_or_the_deadline() -> None:
    import threading
    import time

    from cdx.connectors.sink.pool import join_naming

    done, hold = threading.Thread(target=time.sleep, args=(0.1,)), threading.Event()
    stuck = threading.Thread(target=hold.wait, daemon=True)
    done.start()
    stuck.start()
    join_naming(done, None)
    assert not done.is_alive()
    t0 = time.monotonic()
    join_naming(stuck, time.monotonic() + 0.2)
    assert stuck.is_alive() and 0.15 < time.monotonic() - t0 < 5
    hold.set()


def test_a_thread_that_does_not_end_is_named_with_where_it_is(monkeypatch: pytest.MonkeyPatch,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    """The warning of a stop that hangs says which thread and where it waits (the one hang of ``cdx channel
    bootstrap`` needed a py-spy dump, and two hosts' threads had the same names)."""
    import threading

    from cdx.connectors.sink import pool

    hold = threading.Event()

    def parked_in_a_call() -> None:
        hold.wait(30)

    stuck = threading.Thread(target=parked_in_a_call, name="sink7-feed-1", daemon=True)
    stuck.start()
    monkeypatch.setattr(pool, "STOP_WARN_EVERY", 0.05)
    ended = threading.Timer(0.5, hold.set)
    ended.start()
    with caplog.at_level("WARNING", "cdx.sink"):
        pool.join_naming(stuck, None)
    assert not stuck.is_alive()
    warned = [r.getMessage() for r in caplog.records if "has not ended" in r.getMessage()]
    assert warned and all("sink7-feed-1" in w and "parked_in_a_call" in w for w in warned), warned


def test_the_threads_of_two_hosts_have_different_names() -> None:
    import threading

    from cdx.connectors.sink.pool import Workers

    a, b = Workers(1, list, threading.Event(), "sink1"), Workers(1, list, threading.Event(), "sink2")
    a.start()
    b.start()
    a.stop.set()
    b.stop.set()
    a.join(5)
    b.join(5)
    names = [t.name for t in (*a._threads, *b._threads)]
    assert len(set(names)) == len(names) == 4 and not a.alive() and not b.alive(), names


def test_a_stop_that_times_out_names_every_thread_still_running(caplog: pytest.LogCaptureFixture) -> None:
    """``SinkHost.wait(timeout)`` giving up names each thread still running and where it is (a test's
    ``assert host.wait(30)`` failing then shows the stuck thread in its captured log)."""
    import threading
    from types import SimpleNamespace

    from cdx.connectors.sink.host import SinkHost
    from cdx.connectors.sink.pool import Workers

    release = threading.Event()
    stuck = threading.Thread(target=release.wait, name="sink9-feed-1", daemon=True)
    stuck.start()
    workers = Workers(1, list, threading.Event(), "sink9")
    try:
        with caplog.at_level("WARNING", logger="cdx.sink"):
            SinkHost._name_stuck_threads(SimpleNamespace(workers=workers, _feed_threads=[stuck]))  # type: ignore[arg-type]
    finally:
        release.set()
        stuck.join(5)
    assert "thread sink9-feed-1 still runs after the stop timed out; at wait (threading.py" in caplog.text
