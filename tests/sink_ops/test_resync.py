"""Missed-delete resync: a channel whose stored offsets fall before the group topic's earliest offset
(records deleted with AdminClient.delete_records), or that was stopped longer than the topic's
delete.retention.ms while compaction removed tombstones, rebuilds itself from the topic and removes
the rows deleted meanwhile, instead of silently diverging; the resync is a download session."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient

from cdx.codec import Column, LogicalType
from cdx.connectors.sink.kafkaops import read_range, watermarks
from cdx.kafka.admin import TopicSpec, ensure_topics
from cdx.kafka.config import client_config
from cdx.topics import group_topic
from tests.sink.helpers import (
    FakeRouter,
    expected_state,
    pg_db,
    read_table,
    sqlite_db,
    wait_until,
    write_topology,
)
from tests.sink_ops.helpers import by_db, caught_up, cli, host_state, sessions_of, status_json

pytestmark = pytest.mark.integration

C = LogicalType
ITEMS = (Column("ID", C.INT64, primary_key=True), Column("QTY", C.INT64), Column("NAME", C.STRING))
SUBJOBS = [{"id": "Items", "hq_table": "dbo.ITEMS", "fields": ["ID", "QTY", "NAME"], "scheduled_by": ["1040"]},
           {"id": "Gone", "hq_table": "dbo.GONE", "fields": ["ID", "QTY", "NAME"], "scheduled_by": ["1040"]}]


def _item(router: FakeRouter, op: str, i: int, qty: int = 0, table: str = "ITEMS") -> Any:
    return router.change(table, op, {"ID": i, "QTY": qty, "NAME": f"n{i}"}, columns=ITEMS if table not in
                         router.schemas else None, subjob="Items" if table == "ITEMS" else "Gone")


def _ids(db, table: str = "ITEMS") -> set[int]:
    return {k[0] for k in read_table(db.dialect, db.dsn, "ax", table)}


def test_resync_when_offsets_fall_below_the_earliest(tmp_path: Path, kafka: str, postgres_server: str,
                                                     run_host) -> None:
    db = pg_db(postgres_server, "rs")
    db.id = "c1"
    path, topo = write_topology(tmp_path, kafka, [db], subjobs=SUBJOBS, partitions=2)
    router = FakeRouter(topo, partitions=2)  # cleanup.policy=delete: delete_records is allowed
    for i in range(20):
        _item(router, "c", i, i)
    for i in range(5):
        _item(router, "c", i, i, table="GONE")
    router.flush()
    host = run_host(topo)
    wait_until(lambda: caught_up(host, router), 30, "first load", lambda: host_state(host))
    host.stop()
    assert host.wait(30)

    # while the channel is stopped: deletes, new rows; then the topic is cut to the current state
    for i in range(5):
        _item(router, "d", i)
    for i in range(5):
        _item(router, "d", i, table="GONE")
    for i in range(20, 25):
        _item(router, "c", i, i)
    router.flush()
    cut = router.ends()
    for i in range(5, 25):  # the compacted state: every live key's last value
        _item(router, "u", i, i * 10)
    router.flush()
    admin = AdminClient(client_config(kafka))
    for f in admin.delete_records([TopicPartition(router.topic, p, o) for p, o in cut.items()]).values():
        f.result(30)
    assert watermarks(client_config(kafka), router.topic)[0] == cut

    host = run_host(topo)
    wait_until(lambda: caught_up(host, router), 30, "resync", lambda: host_state(host))
    sink = host.sinks[0]
    assert sink.totals.resyncs == 1 and sink.last_resync is not None
    assert "below the group topic's earliest offsets" in sink.last_resync.reason
    assert _ids(db) == set(range(5, 25)) and _ids(db, "GONE") == set()
    rows = read_table(db.dialect, db.dsn, "ax", "ITEMS")
    assert all(r["QTY"] == k[0] * 10 for k, r in rows.items())
    (resync,) = [s for s in sessions_of(db) if s.kind == "resync"]
    assert resync.status == "Applied" and resync.rows_deleted == 10 and "below" in (resync.detail or "")
    assert resync.offsets == {p: (0, e - 1) for p, e in router.ends().items()}
    host.stop()
    assert host.wait(30)
    st = by_db(status_json(path, "--no-uploads"))["c1"]
    assert st["lag_records"] == 0 and st["last_applied"]["kind"] == "resync"

    # cdx channel resync forces one (idempotent)
    res = cli("channel", "resync", "--topology", path, "--channel", "c1")
    assert res.exit_code == 0 and "0 removed" in res.output, res.output
    assert _ids(db) == set(range(5, 25))


def test_resync_after_compaction_removed_tombstones(tmp_path: Path, kafka: str, run_host) -> None:
    c1, control = sqlite_db(tmp_path, "c1"), sqlite_db(tmp_path, "c2")
    _, topo = write_topology(tmp_path, kafka, [c1, control], subjobs=SUBJOBS[:1], partitions=1)
    config = client_config(kafka)
    ensure_topics(config, [TopicSpec(group_topic(topo.kafka.topic_prefix, "g1"), 1, 1, {
        "cleanup.policy": "compact", "segment.ms": "100", "min.cleanable.dirty.ratio": "0.01",
        "delete.retention.ms": "100", "min.compaction.lag.ms": "0"})])
    router = FakeRouter(topo, partitions=1)
    for i in range(10):
        _item(router, "c", i, i)
    router.flush()
    host = run_host(topo)
    wait_until(lambda: caught_up(host, router), 30, "first load", lambda: host_state(host))
    host.stop()
    assert host.wait(30)

    deleted = [_item(router, "d", i) for i in range(3)]
    router.flush()
    gone = {s.kb for s in deleted}

    def compacted() -> bool:
        _item(router, "u", 9, int(time.time()))  # new segments for the cleaner to roll and clean
        router.flush()
        _, ends = watermarks(config, router.topic)
        return not any(m.key() in gone for m in read_range(config, router.topic, ends))

    wait_until(compacted, 60, "compaction to remove the deletes and their tombstones")

    # the control channel checks nothing: it misses the deletes
    blind = run_host(topo, ["c2"], resync_check=False)
    wait_until(lambda: caught_up(blind, router), 30, "control", lambda: host_state(blind))
    assert {0, 1, 2} <= _ids(control)

    host = run_host(topo, ["c1"])
    wait_until(lambda: caught_up(host, router), 30, "resync", lambda: host_state(host))
    assert host.sinks[0].totals.resyncs == 1
    assert "delete.retention.ms" in (host.sinks[0].last_resync.reason if host.sinks[0].last_resync else "")
    assert _ids(c1) == set(range(3, 10)) == set(k[0] for k in expected_state(router.sent)["ITEMS"])
    (resync,) = [s for s in sessions_of(c1) if s.kind == "resync"]
    assert resync.rows_deleted == 3


def test_resync_isolates_a_row_the_database_refuses(tmp_path: Path, kafka: str, run_host) -> None:
    db = sqlite_db(tmp_path, "c1")
    conn = sqlite3.connect(tmp_path / "c1.db")
    conn.executescript("""
        CREATE TABLE ax_ITEMS ("ID" BIGINT PRIMARY KEY, "QTY" BIGINT, "NAME" TEXT);
        CREATE TRIGGER no_neg BEFORE INSERT ON ax_ITEMS WHEN NEW.QTY < 0 BEGIN SELECT RAISE(ABORT, 'negative'); END;
        CREATE TRIGGER no_neg_u BEFORE UPDATE ON ax_ITEMS WHEN NEW.QTY < 0 BEGIN SELECT RAISE(ABORT, 'negative'); END;
    """)
    conn.close()
    path, topo = write_topology(tmp_path, kafka, [db], subjobs=SUBJOBS[:1], partitions=2)
    router = FakeRouter(topo, partitions=2)
    for i in range(10):
        _item(router, "c", i, -i if i == 3 else i)
    router.flush()
    host = run_host(topo)
    wait_until(lambda: caught_up(host, router), 30, "load", lambda: host_state(host))
    host.stop()
    assert host.wait(30)
    conn = sqlite3.connect(tmp_path / "c1.db")
    conn.execute('INSERT INTO ax_ITEMS VALUES (99, 1, "not in the topic")')
    conn.commit()
    conn.close()

    res = cli("channel", "resync", "--topology", path, "--channel", "c1")
    assert res.exit_code == 0, res.output
    assert "1 removed, 1 refused" in res.output
    assert _ids(db) == set(range(10)) - {3}
    letters = json.loads(cli("dlq", "list", "--topology", path, "--json").stdout)
    assert [x["key"] for x in letters] == [{"ID": 3}, {"ID": 3}] and letters[1]["error"].startswith("resync:")
