"""A host with many channels spreads their idle housekeeping, and each channel's SQLite lease grows with its
idle tick, so a lease always outlives three housekeeping steps."""

from __future__ import annotations

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

    from cdx.connectors.sink.host import _join_naming

    done, hold = threading.Thread(target=time.sleep, args=(0.1,)), threading.Event()
    stuck = threading.Thread(target=hold.wait, daemon=True)
    done.start()
    stuck.start()
    _join_naming(done, None)
    assert not done.is_alive()
    t0 = time.monotonic()
    _join_naming(stuck, time.monotonic() + 0.2)
    assert stuck.is_alive() and 0.15 < time.monotonic() - t0 < 5
    hold.set()
