"""Change-tracking conformance: every dialect's ``ChangeTracker`` must pass every test here.

The semantics are SQL Server Change Tracking's, as documented in
``cdx.connectors.capture.tracking.base``.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

from cdx.connectors.capture.tracking import Change, ChangeTracker, ResyncRequired, tracker_for
from cdx.dialects import ColumnInfo, LogicalType
from cdx.errors import ConfigError

from .harness import Db

L = LogicalType
COLS = ["ITEMID", "NAME", "PRICE"]
KEY = ["ITEMID"]


@dataclass
class Hq:
    db: Db
    tracker: ChangeTracker
    table: str  # schema.ITEMS

    def write(self, upserts: Sequence[tuple[Any, ...]] = (), deletes: Sequence[str] = (), conn: Any = None,
              commit: bool = True) -> Any:
        d = self.db.dialect
        conn = conn or self.db.connect()
        if upserts:
            d.upsert_rows(conn, self.db.schema, "ITEMS", COLS, KEY, upserts)
        if deletes:
            d.delete_rows(conn, self.db.schema, "ITEMS", KEY, [(k,) for k in deletes])
        if commit:
            conn.commit()
        return conn

    def rekey(self, old: str, new: str) -> None:
        d, p = self.db.dialect, self.db.dialect.placeholder
        self.db.execute(f"UPDATE {d.qualified(self.db.schema, 'ITEMS')} SET {d.quote_ident('ITEMID')} = {p}"
                        f" WHERE {d.quote_ident('ITEMID')} = {p}", (new, old))

    def all_changes(self, since: int, limit: int | None = None) -> tuple[list[Change], int]:
        return self.tracker.changes(self.table, since, limit)


def by_key(changes: list[Change]) -> dict[str, Change]:
    out = {c.key["ITEMID"]: c for c in changes}
    assert len(out) == len(changes), f"one change per key expected: {changes}"
    return out


def row(item: str, name: str, price: str) -> tuple[str, str, Decimal]:
    return item, name, Decimal(price)


@pytest.fixture
def hq(db: Db) -> Iterator[Hq]:
    db.create("ITEMS", [ColumnInfo("ITEMID", L.STRING, length=20), ColumnInfo("NAME", L.STRING, length=60),
                        ColumnInfo("PRICE", L.DECIMAL, precision=18, scale=4)], KEY)
    tracker = tracker_for(db.connect())
    table = f"{db.schema}.ITEMS"
    tracker.enable([table])
    tracker.enable([table])  # idempotent
    yield Hq(db, tracker, table)


def test_inserts_updates_deletes_have_the_right_ops_in_commit_order(hq: Hq) -> None:
    v0 = hq.tracker.current_version()
    assert hq.tracker.min_valid_version(hq.table) <= v0
    hq.write([row("A", "apple", "1.5"), row("B", "banana", "2")])
    v1 = hq.tracker.current_version()
    hq.write([row("A", "apple", "1.75")])
    hq.write(deletes=["B"])
    hq.write([row("C", "cherry", "3")])
    v4 = hq.tracker.current_version()
    assert v0 < v1 < v4

    changes, reached = hq.all_changes(v1)
    assert reached == v4
    got = by_key(changes)
    assert {k: c.op for k, c in got.items()} == {"A": "U", "B": "D", "C": "I"}
    assert got["A"].row == {"ITEMID": "A", "NAME": "apple", "PRICE": Decimal("1.75")}
    assert got["B"].row is None and got["B"].key == {"ITEMID": "B"}
    assert got["A"].version < got["B"].version < got["C"].version  # commit order
    assert [c.version for c in changes] == sorted(c.version for c in changes)
    assert all(v1 < c.version <= v4 for c in changes)

    changes, reached = hq.all_changes(v0)
    assert {k: c.op for k, c in by_key(changes).items()} == {"A": "I", "B": "D", "C": "I"}
    assert hq.all_changes(v4) == ([], v4)


def test_net_changes_over_a_version_range(hq: Hq) -> None:
    hq.write([row("KEEP", "k", "1"), row("GONE", "g", "1"), row("BACK", "b", "1"), row("OLD", "o", "1")])
    start = hq.tracker.current_version()
    hq.write([row("KEEP", "k2", "2")])
    hq.write([row("KEEP", "k3", "3")])             # updated twice: one U with the last row
    hq.write(deletes=["GONE"])                     # existed, now gone: D
    hq.write([row("NEW", "n", "1")])               # inserted then updated: one I
    hq.write([row("NEW", "n2", "2")])
    hq.write([row("TEMP", "t", "1")])              # inserted then deleted in the range: D
    hq.write(deletes=["TEMP"])
    hq.write(deletes=["BACK"])                     # deleted then re-inserted: present (U; SQL Server: I)
    hq.write([row("BACK", "b2", "2")])
    hq.rekey("OLD", "RENAMED")                     # key change: D old key, I new key
    changes, reached = hq.all_changes(start)
    assert reached == hq.tracker.current_version()
    got = by_key(changes)
    assert {k: c.op for k, c in got.items() if k != "BACK"} == {
        "KEEP": "U", "GONE": "D", "NEW": "I", "TEMP": "D", "OLD": "D", "RENAMED": "I"}
    assert got["BACK"].op in ("U", "I") and got["BACK"].row == {"ITEMID": "BACK", "NAME": "b2",
                                                                "PRICE": Decimal("2")}
    assert got["KEEP"].row == {"ITEMID": "KEEP", "NAME": "k3", "PRICE": Decimal("3")}
    assert got["NEW"].row == {"ITEMID": "NEW", "NAME": "n2", "PRICE": Decimal("2")}
    assert got["RENAMED"].row == {"ITEMID": "RENAMED", "NAME": "o", "PRICE": Decimal("1")}
    assert all((c.row is None) == (c.op == "D") for c in changes)
    # applying the net changes to the state at `start` gives the current table
    state = {r[0]: {"ITEMID": r[0], "NAME": r[1], "PRICE": r[2]} for r in
             [row("KEEP", "k", "1"), row("GONE", "g", "1"), row("BACK", "b", "1"), row("OLD", "o", "1")]}
    for c in changes:
        if c.row is None:
            state.pop(c.key["ITEMID"], None)
        else:
            state[c.key["ITEMID"]] = c.row
    assert sorted(state.values(), key=lambda r: r["ITEMID"]) == hq.db.select("ITEMS", "ITEMID")


def test_limit_batches_never_split_a_version(hq: Hq) -> None:
    start = hq.tracker.current_version()
    hq.write([row(f"BULK{i}", "b", "1") for i in range(5)])   # one transaction
    for i in range(3):
        hq.write([row(f"ONE{i}", "o", "1")])
    hq.write([row("BULK0", "b2", "2"), row("ONE0", "o2", "2")])
    current = hq.tracker.current_version()
    batches: list[list[Change]] = []
    since = start
    while since < current:
        changes, reached = hq.all_changes(since, limit=2)
        assert reached > since and changes, "each call makes progress"
        assert all(since < c.version <= reached for c in changes)
        batches.append(changes)
        since = reached
    assert len(batches) > 1
    seen_versions: set[int] = set()
    for batch in batches:
        versions = {c.version for c in batch}
        assert not versions & seen_versions, "a version must not span two batches"
        seen_versions |= versions
    full, _ = hq.all_changes(start)
    final = {c.key["ITEMID"]: c.row for batch in batches for c in batch}  # later batches win
    assert final == {c.key["ITEMID"]: c.row for c in full}
    assert len(final) == 8


def test_a_long_transaction_committing_late_is_never_skipped(hq: Hq) -> None:
    v0 = hq.tracker.current_version()
    conn_a = hq.db.connect()
    if hq.db.name == "sqlite":
        conn_a.execute("BEGIN IMMEDIATE")  # SQLite: the first writer holds the write lock to commit
    hq.write([row("A", "long", "1")], conn=conn_a, commit=False)  # A began first and wrote first
    if hq.db.name != "sqlite":
        hq.write([row("B", "short", "1")])  # B writes and commits while A is open
    else:  # SQLite serialises writers: B cannot write until A ends
        conn_b = hq.db.connect()
        conn_b.execute("PRAGMA busy_timeout = 50")
        with pytest.raises(Exception, match="locked"):
            hq.write([row("B", "short", "1")], conn=conn_b)
        conn_b.rollback()
    first, reached = hq.all_changes(v0)
    assert "A" not in by_key(first)
    assert reached >= v0
    if hq.db.name != "sqlite":
        assert by_key(first)["B"].op == "I"  # a committed change is not held back by the open one
    conn_a.commit()  # A commits after the capture already reached `reached`
    if hq.db.name == "sqlite":
        hq.write([row("B", "short", "1")])
    second, reached2 = hq.all_changes(reached)
    got = by_key(second)
    assert got["A"].op == "I" and got["A"].version > reached
    assert got["A"].row == {"ITEMID": "A", "NAME": "long", "PRICE": Decimal("1")}
    assert "B" in by_key(first) | got
    assert reached2 == hq.tracker.current_version() > reached


def test_cleanup_raises_min_valid_version(hq: Hq) -> None:
    if hq.db.name == "sqlserver":
        pytest.skip("SQL Server's shortest retention is one minute")
    v0 = hq.tracker.current_version()
    hq.write([row("A", "a", "1")])
    hq.write([row("A", "a", "2")])
    hq.tracker.cleanup()  # default retention (2 days): nothing old enough
    assert hq.tracker.min_valid_version(hq.table) <= v0
    assert by_key(hq.all_changes(v0)[0])["A"].op == "I"
    current = hq.tracker.current_version()
    hq.tracker.cleanup(dt.timedelta(0))
    min_valid = hq.tracker.min_valid_version(hq.table)
    assert v0 < min_valid <= current
    with pytest.raises(ResyncRequired, match="take a new snapshot") as caught:
        hq.all_changes(v0)
    assert caught.value.min_valid_version == min_valid
    assert hq.all_changes(min_valid) == ([], current)
    hq.write([row("B", "b", "1")])  # tracking goes on after cleanup
    assert [c.key for c in hq.all_changes(min_valid)[0]] == [{"ITEMID": "B"}]
    with pytest.raises(ResyncRequired):  # a version from the future (tracking was reset)
        hq.all_changes(hq.tracker.current_version() + 10)


def test_missing_table_or_table_without_primary_key_is_a_clear_config_error(hq: Hq) -> None:
    d, schema = hq.db.dialect, hq.db.schema
    with pytest.raises(ConfigError, match=rf"table {schema}\.NOPE does not exist"):
        hq.tracker.enable([f"{schema}.NOPE"])
    q = d.quote_ident
    hq.db.execute(f"CREATE TABLE {d.qualified(schema, 'KEYLESS')} ({q('A')} int)")
    with pytest.raises(ConfigError, match=rf"table {schema}\.KEYLESS has no primary key; cdx needs one"
                                          " to key records; add one"):
        hq.tracker.enable([f"{schema}.KEYLESS"])
    with pytest.raises(ConfigError, match="does not exist"):
        hq.tracker.changes(f"{schema}.NOPE", 0)
    hq.db.create("UNTRACKED", [ColumnInfo("ID", L.INT32)], ["ID"])
    with pytest.raises(ConfigError, match="not change-tracked"):
        hq.tracker.changes(f"{schema}.UNTRACKED", 0)
    with pytest.raises(ConfigError, match="invalid"):
        hq.tracker.enable([f"{schema}.BAD;NAME"])


def test_typed_composite_keys_round_trip(db: Db) -> None:
    columns = [ColumnInfo("K_INT", L.INT64), ColumnInfo("K_DAY", L.DATE), ColumnInfo("K_ID", L.UUID),
               ColumnInfo("K_BIN", L.BYTES, length=16), ColumnInfo("K_DEC", L.DECIMAL, precision=10, scale=2),
               ColumnInfo("VAL", L.STRING, length=10)]
    keys = [c.name for c in columns[:-1]]
    db.create("COMPOSITE", columns, keys)
    tracker = tracker_for(db.connect())
    tracker.enable([f"{db.schema}.COMPOSITE"])
    v0 = tracker.current_version()
    key = (2**40, dt.date(2024, 5, 6), uuid.UUID(int=7), b"\x00\x01\xfe", Decimal("12.50"))
    other = (1, dt.date(2020, 1, 1), uuid.UUID(int=8), b"\xff", Decimal("-1.00"))
    conn = db.connect()
    with db.dialect.transaction(conn):
        db.dialect.upsert_rows(conn, db.schema, "COMPOSITE", [c.name for c in columns], keys,
                               [(*key, "x"), (*other, "y")])
    with db.dialect.transaction(conn):
        db.dialect.upsert_rows(conn, db.schema, "COMPOSITE", [c.name for c in columns], keys, [(*key, "z")])
        db.dialect.delete_rows(conn, db.schema, "COMPOSITE", keys, [other])
    changes, _ = tracker.changes(f"{db.schema}.COMPOSITE", v0)
    ops = {tuple(c.key.values()): (c.op, c.row and c.row["VAL"]) for c in changes}
    assert ops == {key: ("I", "z"), other: ("D", None)}
    assert list(changes[0].key) == keys


def test_disable_stops_tracking(hq: Hq) -> None:
    hq.write([row("A", "a", "1")])
    hq.tracker.disable([hq.table])
    hq.write([row("B", "b", "1")])
    with pytest.raises(ConfigError, match="not change-tracked"):
        hq.tracker.changes(hq.table, 0)
    hq.tracker.enable([hq.table])
    v = hq.tracker.current_version()
    assert hq.tracker.min_valid_version(hq.table) <= v
    hq.write([row("C", "c", "1")])
    assert [c.key["ITEMID"] for c in hq.all_changes(v)[0]] == ["C"]


def test_truncate_requires_a_resync(hq: Hq) -> None:
    if hq.db.name == "sqlite":
        pytest.skip("SQLite has no TRUNCATE (DELETE without WHERE fires the row triggers)")
    v0 = hq.tracker.current_version()
    hq.write([row("A", "a", "1")])
    hq.db.execute(f"TRUNCATE TABLE {hq.db.dialect.qualified(hq.db.schema, 'ITEMS')}")
    current = hq.tracker.current_version()
    assert v0 < hq.tracker.min_valid_version(hq.table) <= current
    with pytest.raises(ResyncRequired):
        hq.all_changes(v0)


def test_concurrent_writers_are_all_captured(hq: Hq) -> None:
    """Writers with transactions of random length race a capture loop: every key arrives."""
    since = hq.tracker.current_version()
    written: set[str] = set()
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        rnd = random.Random(n)
        conn = hq.db.connect()
        try:
            for i in range(15):
                keys = [f"W{n}-{i}-{j}" for j in range(rnd.randint(1, 3))]
                with hq.db.dialect.transaction(conn):
                    hq.write([row(k, "w", "1") for k in keys[:1]], conn=conn, commit=False)
                    time.sleep(rnd.random() * 0.02)
                    hq.write([row(k, "w", "1") for k in keys[1:]], conn=conn, commit=False)
                written.update(keys)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    seen: dict[str, int] = {}
    last = since
    while any(t.is_alive() for t in threads) or since < hq.tracker.current_version():
        changes, reached = hq.all_changes(since, limit=5)
        assert reached >= since and all(c.version > since for c in changes)
        assert all(c.version > last for c in changes) or not changes
        seen.update({c.key["ITEMID"]: c.version for c in changes})
        last = max([last, *(c.version for c in changes)])
        since = reached
    for t in threads:
        t.join()
    assert not errors, errors
    assert set(seen) == written


def test_snapshot_in_chunks_resumes_after_any_typed_composite_key(db: Db) -> None:
    """``snapshot_chunk``: every row once, in key order, resumed from a raw key kept as JSON in a position."""
    import json

    from cdx.connectors.capture.positions import SnapshotProgress

    columns = [ColumnInfo("K_DAY", L.DATE), ColumnInfo("K_TS", L.TIMESTAMP), ColumnInfo("K_DEC", L.DECIMAL,
               precision=10, scale=2), ColumnInfo("K_TXT", L.STRING, length=10), ColumnInfo("VAL", L.INT64)]
    keys = [c.name for c in columns[:-1]]
    db.create("CHUNKED", columns, keys)
    tracker = tracker_for(db.connect())
    tracker.enable([f"{db.schema}.CHUNKED"])
    rows = [(dt.date(2024, 1, 1 + i % 3), dt.datetime(2024, 1, 1, 10, i % 4, 0, 250000), Decimal(f"{i % 5}.50"),
             f"t{i:02d}", i) for i in range(60)]
    conn = db.connect()
    with db.dialect.transaction(conn):
        db.dialect.upsert_rows(conn, db.schema, "CHUNKED", [c.name for c in columns], keys, rows)
    seen: list[int] = []
    progress = SnapshotProgress(None, 0, 0)
    while True:
        chunk, last = tracker.snapshot_chunk(f"{db.schema}.CHUNKED", progress.after, 7)
        seen += [r["VAL"] for r in chunk]
        if len(chunk) < 7:
            break
        progress = SnapshotProgress.from_json(json.loads(json.dumps(SnapshotProgress(last, 0, 0).to_json())))
    assert sorted(seen) == list(range(60)) and len(seen) == 60


def test_columns_added_or_dropped_after_a_read_are_seen_at_once(hq: Hq) -> None:
    """A tracker may cache a table's columns between reads (PostgreSQL does, keyed by its catalog rows): a
    column added or dropped at HQ must show in the very next read, never a stale column list."""
    d, q = hq.db.dialect, hq.db.dialect.quote_ident
    v0 = hq.tracker.current_version()
    hq.write([row("A", "a", "1")])
    assert set(hq.all_changes(v0)[0][0].row or {}) == set(COLS)
    hq.db.execute(f"ALTER TABLE {d.qualified(hq.db.schema, 'ITEMS')} ADD {q('COLOR')} varchar(10)")
    v1 = hq.tracker.current_version()
    hq.write([row("B", "b", "2")])
    assert set(hq.all_changes(v1)[0][0].row or {}) == {*COLS, "COLOR"}
    hq.db.execute(f"ALTER TABLE {d.qualified(hq.db.schema, 'ITEMS')} DROP COLUMN {q('COLOR')}")
    v2 = hq.tracker.current_version()
    hq.write([row("C", "c", "3")])
    assert set(hq.all_changes(v2)[0][0].row or {}) == set(COLS)
