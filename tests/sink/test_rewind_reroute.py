"""``cdx replay`` drops both kinds of watermark of a rewound partition: the live ones and the re-route ones.

A kept re-route watermark would skip the re-routed records read again while the older live records
before them are applied again, leaving a key at an older value than it had. Real SQLite state table,
records encoded by the router's codec and read by the sink's decoder, planned by the sink's planner."""

from __future__ import annotations

from pathlib import Path

from cdx.connectors.sink.plan import plan_batch
from cdx.connectors.sink.rewind import RewindResult, _move_back
from cdx.connectors.sink.state import StateStore, reroute_key, watermark_key
from cdx.dialects import get_dialect
from tests.sink.test_reroute_units import SOURCE, SPEC, Maker


def test_a_rewind_drops_live_and_reroute_watermarks_of_its_partitions(tmp_path: Path) -> None:
    dialect = get_dialect("sqlite")
    conn = dialect.connect(f"sqlite:///{tmp_path / 'c1.db'}")
    store = StateStore(dialect, SPEC.topic)
    m = Maker()
    records = [m.rec("u", {"ID": 1, "NAME": "old", "COLOR": None}, 10),  # live, before the re-route
               m.rec("r", {"ID": 1, "NAME": "new", "COLOR": "red"}, 11, "1")]  # re-routed: the newest value
    with dialect.transaction(conn):
        store.ensure(conn)
        first = plan_batch(records, store.load(conn), SPEC)
        assert first.duplicates == 0
        other = {watermark_key(1, SOURCE, 0): first.watermarks[watermark_key(0, SOURCE, 0)]}
        store.save(conn, {0: 2, 1: 7}, {**first.watermarks, **other})
    assert set(store.load(conn).watermarks) == {watermark_key(0, SOURCE, 0), reroute_key(0, SOURCE, 0),
                                                 watermark_key(1, SOURCE, 0)}

    with dialect.transaction(conn):
        _move_back(conn, dialect, store, SPEC, RewindResult(moved={0: (2, 0)}), "from offset 0")
    state = store.load(conn)
    assert state.offsets == {0: 0, 1: 7}
    assert set(state.watermarks) == {watermark_key(1, SOURCE, 0)}  # partition 1 was not rewound

    again = plan_batch(records, state, SPEC)  # the replay applies both records again, in offset order
    assert again.duplicates == 0
    assert again.tables[("ax", "ITEMS")].upserts() == {("ID", "NAME", "COLOR"): [(1, "new", "red")]}
    conn.close()
