"""Sink items of issue 13: timestamptz in a non-UTC database (4), a key change under a secondary
unique index within one batch (6), a conflicting channel table refused by ``cdx channel init`` and
the sink before anything is written, and a failure that hits every record stopping the channel
instead of flooding the dead-letter topic (7)."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cdx.cli.main import app
from cdx.codec import Column, LogicalType
from cdx.connectors.sink.host import SinkHost
from cdx.connectors.sink.runner import SinkSettings
from cdx.dialects import connect, get_dialect
from cdx.kafka.config import client_config
from cdx.kafka.reading import read_to_end
from cdx.topics import dlq_topic
from cdx.topology.root import Topology
from tests.sink.conftest import FAST
from tests.sink.helpers import Db, FakeRouter, pg_db, read_table, sqlite_db, wait_until, write_topology

pytestmark = pytest.mark.integration

C = LogicalType
EV = (Column("ID", C.INT64, primary_key=True), Column("TS", C.TIMESTAMP))
ITEMS = (Column("ID", C.INT64, primary_key=True), Column("CODE", C.STRING, length=20), Column("QTY", C.INT64))
SUBJOB = {"id": "Items", "hq_table": "dbo.ITEMS", "fields": ["ID", "CODE", "QTY"], "scheduled_by": ["1040"]}


def _letters(kafka: str, prefix: str) -> list[dict]:
    return [json.loads(m.value() or b"") for m in read_to_end(client_config(kafka), dlq_topic(prefix)) if m.value()]


def _caught_up(host, router: FakeRouter) -> bool:
    ends = router.ends()
    return all(all(s.state.offsets.get(p, 0) >= e for p, e in ends.items() if e) for s in host.sinks)


@contextmanager
def _stopping_host(topo: Topology) -> Iterator[SinkHost]:
    """A started host whose sink is expected to fail (the ``run_host`` fixture asserts none failed)."""
    host = SinkHost(topo, None, SinkSettings(**FAST.__dict__))
    host.setup()
    host.start()
    try:
        yield host
    finally:
        host.stop()
        host.wait(30)
        assert not host.alive(), "sink host did not stop in 30s"


def _db(dialect: str, tmp_path: Path, server: str, name: str) -> Db:
    return sqlite_db(tmp_path, name) if dialect == "sqlite" else pg_db(server, name)


def _execute(db: Db, *statements: str) -> None:
    d = get_dialect(db.dialect)
    conn = connect(db.dialect, db.dsn)
    with d.transaction(conn):
        d.ensure_schema(conn, "ax")
        for sql in statements:
            conn.execute(sql.replace("{ITEMS}", d.qualified("ax", "ITEMS")))
    conn.close()


def _non_utc_database(server: str) -> Db:
    db = pg_db(server, "tz")
    from psycopg.conninfo import conninfo_to_dict

    name = conninfo_to_dict(db.dsn)["dbname"]
    admin = connect("postgresql", server)
    admin.autocommit = True
    admin.execute(f"ALTER DATABASE \"{name}\" SET timezone = 'America/New_York'")
    admin.close()
    return db


def _epoch(dsn: str, sql: str) -> list[float]:
    import psycopg

    with psycopg.connect(dsn) as conn:  # a plain session: the database's zone, America/New_York
        assert conn.execute("SHOW timezone").fetchone()[0] == "America/New_York"
        return [float(r[0]) for r in conn.execute(sql).fetchall()]


# -- 4: timestamptz ------------------------------------------------------------------------------
def test_timestamptz_channel_table_in_a_non_utc_database(tmp_path: Path, kafka: str, postgres_server: str,
                                                         run_host) -> None:
    db = _non_utc_database(postgres_server)
    _execute(db, 'CREATE TABLE ax."EV" ("ID" bigint PRIMARY KEY, "TS" timestamptz)')
    _, topo = write_topology(tmp_path, kafka, [db], partitions=1,
                             subjobs=[{"id": "Ev", "hq_table": "dbo.EV", "fields": ["ID", "TS"],
                                       "scheduled_by": ["1040"]}])
    router = FakeRouter(topo, partitions=1)
    noon_utc = dt.datetime(2024, 1, 15, 12, 0, 0)
    router.change("EV", "c", {"ID": 1, "TS": noon_utc}, columns=EV, subjob="Ev")
    router.flush()
    host = run_host(topo)
    wait_until(lambda: _caught_up(host, router), 30, "the record", lambda: str(host.sinks[0].last_error))
    expected = noon_utc.replace(tzinfo=dt.UTC).timestamp()
    assert _epoch(db.dsn, 'SELECT extract(epoch FROM "TS") FROM ax."EV"') == [expected]


def test_timestamptz_hq_upload_table_in_a_non_utc_database(postgres_server: str) -> None:
    """The HQ upload sink writes with ``insert_ignore_existing`` on a cdx connection."""
    db = _non_utc_database(postgres_server)
    _execute(db, 'CREATE TABLE ax."SALES" ("ID" bigint PRIMARY KEY, "AT" timestamptz, "LOCAL" timestamp)')
    d = get_dialect("postgresql")
    when = dt.datetime(2024, 7, 1, 23, 30, 0)
    conn = d.connect(db.dsn)
    with d.transaction(conn):
        d.insert_ignore_existing(conn, "ax", "SALES", ["ID", "AT", "LOCAL"], ["ID"], [(1, when, when)])
    conn.close()
    assert _epoch(db.dsn, 'SELECT extract(epoch FROM "AT") FROM ax."SALES"') == [
        when.replace(tzinfo=dt.UTC).timestamp()]
    conn = d.connect(db.dsn)
    assert conn.execute('SELECT "LOCAL" FROM ax."SALES"').fetchone()[0] == when
    conn.close()


# -- 6: key change under a secondary unique index -------------------------------------------------
@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_key_change_with_a_secondary_unique_index(dialect: str, tmp_path: Path, kafka: str, postgres_server: str,
                                                  run_host) -> None:
    db = _db(dialect, tmp_path, postgres_server, "uq")
    _execute(db, 'CREATE TABLE {ITEMS} ("ID" BIGINT PRIMARY KEY, "CODE" VARCHAR(20) NOT NULL, "QTY" BIGINT)',
             f'CREATE UNIQUE INDEX "UQ_CODE_{uuid.uuid4().hex[:6]}" ON {{ITEMS}} ("CODE")')
    _, topo = write_topology(tmp_path, kafka, [db], subjobs=[SUBJOB], partitions=1)
    router = FakeRouter(topo, partitions=1)
    router.change("ITEMS", "c", {"ID": 1, "CODE": "A", "QTY": 1}, columns=ITEMS, subjob="Items")
    router.change("ITEMS", "c", {"ID": 5, "CODE": "E", "QTY": 5}, subjob="Items")
    router.flush()
    host = run_host(topo)
    wait_until(lambda: _caught_up(host, router), 30, "phase 1")
    host.stop()
    assert host.wait(30)
    # one batch: HQ changed row 1's key to 2 (delete 1, insert 2 with the same CODE) and row 5's to 6
    router.change("ITEMS", "d", {"ID": 1}, subjob="Items")
    router.change("ITEMS", "c", {"ID": 2, "CODE": "A", "QTY": 1}, subjob="Items")
    router.change("ITEMS", "c", {"ID": 6, "CODE": "E", "QTY": 6}, subjob="Items")
    router.change("ITEMS", "d", {"ID": 5}, subjob="Items")
    router.flush()
    host2 = run_host(topo)
    wait_until(lambda: _caught_up(host2, router), 30, "phase 2", lambda: str(host2.sinks[0].last_error))
    assert host2.sinks[0].totals.dead_lettered == 0
    assert {k: r["CODE"] for k, r in read_table(dialect, db.dsn, "ax", "ITEMS").items()} == {(2,): "A", (6,): "E"}
    assert _letters(kafka, topo.kafka.topic_prefix) == []


# -- 7: conflicting channel tables, systematic failures ---------------------------------------------
CONFLICTS = [
    ("column type", 'CREATE TABLE {ITEMS} ("ID" BIGINT PRIMARY KEY, "CODE" VARCHAR(20), "QTY" DATE)',
     ["ax.ITEMS", "column QTY", "date", "expected bigint"]),
    ("primary key", 'CREATE TABLE {ITEMS} ("ID" BIGINT, "CODE" VARCHAR(20) PRIMARY KEY, "QTY" BIGINT)',
     ["ax.ITEMS", "primary key is (CODE), expected (ID)"]),
]


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
@pytest.mark.parametrize(("ddl", "expected"), [c[1:] for c in CONFLICTS], ids=[c[0] for c in CONFLICTS])
def test_conflicting_table_is_refused_before_anything_is_written(dialect: str, ddl: str, expected: list[str],
                                                                 tmp_path: Path, kafka: str,
                                                                 postgres_server: str) -> None:
    db = _db(dialect, tmp_path, postgres_server, "conflict")
    _execute(db, ddl)
    path, topo = write_topology(tmp_path, kafka, [db], subjobs=[SUBJOB], partitions=1)
    router = FakeRouter(topo, partitions=1)
    for i in range(200):
        router.change("ITEMS", "c", {"ID": i, "CODE": f"c{i}", "QTY": i}, columns=ITEMS, subjob="Items")
    router.flush()
    res = CliRunner().invoke(app, ["channel", "init", "-t", str(path)])
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output and res.stderr.startswith("error: ")
    for text in expected:
        assert text.lower() in res.stderr.lower()
    d = get_dialect(dialect)
    conn = connect(dialect, db.dsn)
    assert not d.table_exists(conn, *(("cdx", "cdx_state") if dialect != "sqlite" else (None, "cdx_state")))
    conn.rollback()
    conn.close()

    with _stopping_host(topo) as host:
        sink = host.sinks[0]
        wait_until(lambda: sink.status == "failed", 30, "the sink to stop", lambda: f"{sink.status} {sink.last_error}")
    for text in expected:
        assert text.lower() in (sink.last_error or "").lower()
    assert read_table(dialect, db.dsn, "ax", "ITEMS") == {}
    assert _letters(kafka, topo.kafka.topic_prefix) == []


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_failure_of_every_record_stops_the_channel_without_a_dead_letter_flood(
        dialect: str, tmp_path: Path, kafka: str, postgres_server: str) -> None:
    db = _db(dialect, tmp_path, postgres_server, "flood")
    # fits the records (no conflict to see), but every insert lacks the NOT NULL column STORE
    _execute(db, 'CREATE TABLE {ITEMS} ("ID" BIGINT PRIMARY KEY, "CODE" VARCHAR(20), "QTY" BIGINT,'
                 ' "STORE" VARCHAR(10) NOT NULL)')
    _, topo = write_topology(tmp_path, kafka, [db], subjobs=[SUBJOB], partitions=2)
    router = FakeRouter(topo, partitions=2)
    for i in range(500):
        router.change("ITEMS", "c", {"ID": i, "CODE": f"c{i}", "QTY": i}, columns=ITEMS, subjob="Items")
    router.flush()
    with _stopping_host(topo) as host:
        sink = host.sinks[0]
        wait_until(lambda: sink.status == "failed", 60, "the sink to stop", lambda: f"{sink.status} {sink.last_error}")
    assert "refuses every record of ax.ITEMS" in (sink.last_error or "") and "STORE" in (sink.last_error or "")
    assert sink.totals.dead_lettered == 0 and sink.totals.applied == 0
    assert _letters(kafka, topo.kafka.topic_prefix) == []
    assert read_table(dialect, db.dsn, "ax", "ITEMS") == {}


def test_breaker_streak_without_later_records_to_probe() -> None:
    """One record per batch (light traffic): the 10th identical refusal in a row stops the channel; a
    record applied in between, or a different error, starts the count again."""
    import sqlite3

    from cdx.connectors.sink.breaker import FailureBreaker, SystematicFailure, signature
    from cdx.connectors.sink.records import Record

    def refusal(row: int) -> sqlite3.IntegrityError:
        return sqlite3.IntegrityError(f"NOT NULL constraint failed: ax_ITEMS.STORE (row {row})")

    assert signature(refusal(1)) == signature(refusal(2)) != signature(sqlite3.IntegrityError("CHECK failed"))
    breaker = FailureBreaker("s1", lambda r: None, threshold=10)
    rec = Record(0, 0, b"k", b"v")
    for i in range(9):
        breaker.refused(refusal(i), rec, [])
    breaker.succeeded()
    for i in range(9):
        breaker.refused(refusal(i), rec, [])
    breaker.refused(sqlite3.IntegrityError("CHECK constraint failed: QTY"), rec, [])
    for i in range(9):
        breaker.refused(refusal(i), rec, [])
    with pytest.raises(SystematicFailure, match="10 records in a row"):
        breaker.refused(refusal(99), rec, [])
