"""Capture limits (issue 13): large rows, re-snapshots of tables keyed by any type, chunked snapshots.

Real broker, real PostgreSQL and SQLite; records are read back from the topics the real producer wrote."""

from __future__ import annotations

import base64
import datetime as dt
import os
import time
import uuid
from decimal import Decimal
from pathlib import Path

import pytest

from cdx.connectors.capture.connector import CaptureConnector
from cdx.connectors.capture.positions import load_positions
from cdx.connectors.capture.tracking import open_tracker
from cdx.connectors.sink.letters import read_letters
from cdx.dialects import ColumnInfo, LogicalType, connect, get_dialect
from cdx.errors import RetriableError
from cdx.kafka.admin import COMPACTED, TopicSpec, ensure_topics
from cdx.kafka.config import client_config
from cdx.topics import dlq_topic, positions_topic, table_topic
from cdx.topology.loader import load_topology
from tests.capture.helpers import last_state, make_hq, read_table, write_topology

pytestmark = pytest.mark.integration

DIALECTS = ["sqlite", "postgresql"]


def _dsn(request: pytest.FixtureRequest, dialect: str, tmp_path: Path) -> str:
    if dialect == "sqlite":
        return f"sqlite:///{tmp_path}/hq.db"
    from cdx.infra.postgres import launcher

    server = request.getfixturevalue("postgres_server")
    return launcher.create_database(server, f"caplim_{uuid.uuid4().hex[:12]}")


def _run(dialect: str, dsn: str, sql: str, rows: list[tuple] | None = None) -> None:
    d = get_dialect(dialect)
    conn = connect(dialect, dsn)
    ph = "?" if dialect == "sqlite" else "%s"
    with d.transaction(conn):
        cur = conn.cursor()
        for row in rows or [()]:
            cur.execute(sql.replace("{p}", ph), row)
    conn.close()


def _hq(request: pytest.FixtureRequest, dialect: str, tmp_path: Path, kafka: str, max_bytes: int | None = None):
    dsn = _dsn(request, dialect, tmp_path)
    make_hq(dialect, dsn)
    path, topo = write_topology(tmp_path, kafka, dialect, dsn)
    if max_bytes is not None:
        path.write_text(path.read_text().replace("default_partitions: 3",
                                                 f"default_partitions: 3, max_message_bytes: {max_bytes}", 1))
        topo = load_topology(path)
        assert topo.kafka.max_message_bytes == max_bytes
    tracker = open_tracker(dialect, dsn)
    tracker.enable(["dbo.ITEMS", "dbo.NOTES"])
    tracker.conn.close()
    return dsn, topo


def _started(cap: CaptureConnector) -> CaptureConnector:
    """``setup()`` retried while Kafka is not ready, as the CLI's ``set_up`` does (a new topic's leader
    may still be moving under load)."""
    for attempt in range(10):
        try:
            cap.setup()
            return cap
        except RetriableError:
            if attempt == 9:
                raise
            time.sleep(1)
    return cap


def _notes(dialect: str) -> str:
    return get_dialect(dialect).qualified("dbo", "NOTES")


def _items(dialect: str) -> str:
    return get_dialect(dialect).qualified("dbo", "ITEMS")


# ------------------------------------------------------------------------------ 1. large rows
@pytest.mark.parametrize("dialect", DIALECTS)
def test_row_of_a_megabyte_goes_through_with_the_default_limit(request, dialect, tmp_path, kafka) -> None:
    dsn, topo = _hq(request, dialect, tmp_path, kafka)
    assert getattr(topo.kafka, "max_message_bytes", 8 << 20) >= 8 * 1024 * 1024
    big = base64.b64encode(os.urandom(1_200_000)).decode()  # 1.6 MB, ~1.2 MB compressed: over the 1 MB defaults
    _run(dialect, dsn, f"INSERT INTO {_notes(dialect)} VALUES (1, {{p}})", [(big,)])
    topic = table_topic(topo.kafka.topic_prefix, "hq", "dbo", "NOTES")  # made earlier, with the broker's limit
    ensure_topics(client_config(topo.kafka.bootstrap_servers), [TopicSpec(topic, 3, 1, COMPACTED)])
    cap = CaptureConnector(topo)
    _started(cap)
    try:
        cap.poll_once()
    finally:
        cap.close()
    state = last_state(read_table(topo, "NOTES"))
    assert [v["TXT"] for v in state.values()] == [big]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_row_over_the_limit_is_dead_lettered_and_nothing_waits(request, dialect, tmp_path, kafka) -> None:
    dsn, topo = _hq(request, dialect, tmp_path, kafka, max_bytes=1024 * 1024)
    cap = CaptureConnector(topo)
    _started(cap)
    try:
        cap.poll_once()  # empty snapshots
        too_big = os.urandom(1_000_000).hex()  # 2 MB
        _run(dialect, dsn, f"INSERT INTO {_notes(dialect)} VALUES ({{p}}, {{p}})", [(1, "small"), (2, too_big)])
        _run(dialect, dsn, f"INSERT INTO {_items(dialect)} VALUES ('usrt', 'A', 'apple', 1.5, 1)")
        cap.poll_once()  # must not raise or retry: the letter goes out, both tables move on
        _run(dialect, dsn, f"INSERT INTO {_notes(dialect)} VALUES (3, 'after')")
        cap.poll_once()
    finally:
        cap.close()
    notes = last_state(read_table(topo, "NOTES"))
    assert sorted(v["ID"] for v in notes.values()) == [1, 3]
    assert [v["ITEMID"] for v in last_state(read_table(topo, "ITEMS")).values()] == ["A"]
    cfg = client_config(topo.kafka.bootstrap_servers)
    letters = [x for x in read_letters(cfg, dlq_topic(topo.kafka.topic_prefix)) if x.component == "capture"]
    assert len(letters) == 1
    letter = letters[0]
    assert letter.table == "dbo.NOTES" and letter.key == {"ID": 2}
    assert "exceeds kafka.max_message_bytes" in letter.error and "2,0" in letter.error  # the size, ~2 MB
    positions = load_positions(cfg, positions_topic(topo.kafka.topic_prefix), "hq")
    assert positions["dbo.NOTES"].snapshot is None and positions["dbo.NOTES"].version > 0


# ------------------------------------------------------------------ 2. re-snapshot, typed keys
KEYED = {
    "TSKEY": (ColumnInfo("K", LogicalType.TIMESTAMP, nullable=False),
              [dt.datetime(2024, 1, 1, 10, 30, 15, 250000), dt.datetime(2024, 6, 30, 23, 59, 59)]),
    "DATEKEY": (ColumnInfo("K", LogicalType.DATE, nullable=False), [dt.date(2024, 1, 1), dt.date(2024, 2, 29)]),
    "DECKEY": (ColumnInfo("K", LogicalType.DECIMAL, nullable=False, precision=12, scale=2),
               [Decimal("1.50"), Decimal("99999.99")]),
    "TEXTKEY": (ColumnInfo("K", LogicalType.STRING, nullable=False, length=20), ["alpha", "Zeta ü"]),
}
KEYED_TOPOLOGY = """
kafka: {{bootstrap_servers: "{bootstrap}", topic_prefix: {prefix}, default_partitions: 2}}
hq: {{name: hq, dialect: {dialect}, dsn: "{dsn}"}}
jobs:
  - {{id: "1040", direction: download}}
subjobs:
{subjobs}
channel_data_groups:
  - id: g1
    legal_entities: [usrt]
    channels:
      - {{id: c1, database: {{dialect: sqlite, dsn: "sqlite:///{tmp}/c1.db"}}}}
distribution_schedules:
  - {{id: S1, direction: download, jobs: ["1040"], channel_data_groups: [g1]}}
"""


@pytest.mark.parametrize("dialect", DIALECTS)
def test_resnapshot_keeps_rows_keyed_by_timestamp_date_decimal_text(request, dialect, tmp_path, kafka) -> None:
    dsn = _dsn(request, dialect, tmp_path)
    d = get_dialect(dialect)
    conn = connect(dialect, dsn)
    with d.transaction(conn):
        d.ensure_schema(conn, "dbo")
        for table, (key, _values) in KEYED.items():
            d.create_table(conn, "dbo", table, [key, ColumnInfo("V", LogicalType.INT64)], ["K"])
    conn.close()
    for table, (_key, values) in KEYED.items():
        _run(dialect, dsn, f"INSERT INTO {d.qualified('dbo', table)} VALUES ({{p}}, {{p}})",
             [(d.encode(v), i) for i, v in enumerate(values)])
    subjobs = "\n".join(f'  - {{id: {t}, hq_table: dbo.{t}, fields: [K, V], scheduled_by: ["1040"]}}' for t in KEYED)
    path = tmp_path / "topology.yaml"
    path.write_text(KEYED_TOPOLOGY.format(bootstrap=kafka, prefix=f"key{uuid.uuid4().hex[:8]}", dialect=dialect,
                                          dsn=dsn, tmp=tmp_path, subjobs=subjobs))
    topo = load_topology(path)
    tracker = open_tracker(dialect, dsn)
    tracker.enable([f"dbo.{t}" for t in KEYED])
    cap = CaptureConnector(topo)
    _started(cap)
    try:
        cap.poll_once()
        for table, (_key, values) in KEYED.items():  # one row goes while changes are unavailable
            _run(dialect, dsn, f"DELETE FROM {d.qualified('dbo', table)} WHERE \"K\" = {{p}}", [(d.encode(values[1]),)])
        tracker.current_version()  # PostgreSQL stamps committed transactions here
        tracker.cleanup(dt.timedelta(0))  # every position expires: re-snapshot
        cap.poll_once()
    finally:
        cap.close()
        tracker.conn.close()
    for table in KEYED:
        records = read_table(topo, table)
        deletes = [k for k, env in records if env is not None and env["op"] == "d"]
        assert len(deletes) == 1, f"{table}: {deletes}"  # only the row really deleted
        assert [v["V"] for v in last_state(records).values()] == [0], table


# ------------------------------------------------------------------------ 3. chunked snapshots
@pytest.mark.parametrize("dialect", DIALECTS)
def test_snapshot_in_chunks_resumes_after_a_stop_and_catches_up(request, dialect, tmp_path, kafka) -> None:
    dsn, topo = _hq(request, dialect, tmp_path, kafka)
    n = 1000
    _run(dialect, dsn, f"INSERT INTO {_notes(dialect)} VALUES ({{p}}, {{p}})", [(i, f"n{i}") for i in range(n)])
    cfg = client_config(topo.kafka.bootstrap_servers)
    first = CaptureConnector(topo, snapshot_chunk_rows=100)
    _started(first)
    for _ in range(3):
        first.poll_once()
    first.close()  # as if killed between two chunks: what is committed is committed
    progress = load_positions(cfg, positions_topic(topo.kafka.topic_prefix), "hq")["dbo.NOTES"].snapshot
    assert progress is not None and progress.rows == 300
    # changes while the snapshot is under way: in a chunk already read, in one to come, a delete
    _run(dialect, dsn, f'UPDATE {_notes(dialect)} SET "TXT" = \'changed\' WHERE "ID" IN (5, 905)')
    _run(dialect, dsn, f'DELETE FROM {_notes(dialect)} WHERE "ID" = 500')
    second = CaptureConnector(topo, snapshot_chunk_rows=100)
    _started(second)
    try:
        for _ in range(12):
            second.poll_once()
    finally:
        second.close()
    records = read_table(topo, "NOTES")
    reads = [k["ID"] for k, env in records if env is not None and env["op"] == "r"]
    assert len(reads) == len(set(reads)) == n - 1  # resumed at row 300: nothing published twice
    state = {v["ID"]: v["TXT"] for v in last_state(records).values()}
    assert len(state) == n - 1 and 500 not in state
    assert state[5] == state[905] == "changed" and state[6] == "n6"
    assert load_positions(cfg, positions_topic(topo.kafka.topic_prefix), "hq")["dbo.NOTES"].snapshot is None
