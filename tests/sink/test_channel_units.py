"""``ChannelSink`` without Kafka: it is stepped by a worker, opens its SQLite database and takes the
channel lock, then wants its partitions from the offsets the database holds; the feed's offers are
taken once each, in order; a sink that finds the lock held stands by and wants nothing; ``close``
releases the lock (``live_holder`` then names nobody)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING

from cdx.connectors.sink.lock import live_holder
from cdx.connectors.sink.runner import ChannelSink
from cdx.connectors.sink.settings import SinkSettings
from cdx.connectors.sink.spec import sink_specs
from cdx.connectors.sink.tools import open_database
from cdx.dialects import get_dialect
from tests.sink.helpers import sqlite_db, write_topology


class Msg:
    def __init__(self, p: int, o: int) -> None:
        self.p, self.o = p, o

    def partition(self) -> int:
        return self.p

    def offset(self) -> int:
        return self.o


def sink_of(tmp_path: Path, topo: Any) -> ChannelSink:
    (spec,) = sink_specs(topo, ["c1"])
    return ChannelSink(spec, {}, None, None, SinkSettings(batch_size=10), threading.Event())  # type: ignore[arg-type]


def test_a_stepped_sink_opens_its_database_then_takes_each_offer_once(tmp_path: Path) -> None:
    _, topo = write_topology(tmp_path, "localhost:1", [sqlite_db(tmp_path, "c1")])
    sink = sink_of(tmp_path, topo)
    assert sink.wants([0, 1]) is None and sink.has_work(0.0)  # not open yet
    sink.step()
    assert sink.status == "running" and sink.phase == "running", sink.last_error
    assert sink.wants([0, 1]) == {0: OFFSET_BEGINNING, 1: OFFSET_BEGINNING}
    m0, m1 = Msg(0, 4), Msg(0, 7)
    assert sink.offer(0, 4, OFFSET_BEGINNING, m0)  # the first record there (earlier ones compacted away)
    assert not sink.offer(0, 4, 5, m0)  # offered again after a re-positioning: already taken
    assert not sink.offer(0, 9, 8, Msg(0, 9))  # the feed's cursor passed records it has not seen: refused
    assert sink.offer(0, 7, 5, m1)
    sink.skip_to(0, 8, 11)  # markers up to 11
    assert sink.wants([0]) == {0: 11} and list(sink._inbox) == [m0, m1]

    other = sink_of(tmp_path, topo)
    other.lock.holder = "cdx sink of another process"
    other.step()  # the lock is held by the first one: it stands by and wants nothing
    assert other.status == "standby" and other.wants([0]) is None and not other.has_work(0.0)
    d = get_dialect("sqlite")
    conn = open_database(sink.spec)
    try:
        assert (live_holder(d, conn, sink.spec.consumer_group) or {}).get("pid") is not None
        sink.close()
        other.close()
        assert live_holder(d, conn, sink.spec.consumer_group) is None
    finally:
        conn.close()
    assert sink.status == "stopped" and sink.wants([0]) is None
