"""Bad-input corpus, channel tables and records (real Kafka, SQLite and PostgreSQL): existing
channel tables that conflict with the topology, a database that cannot be opened among several, and
record selections the group topic or the dead-letter topic cannot satisfy. ``channel init`` and
``channel bootstrap`` are all or nothing: when one database is refused, none is changed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cdx.codec import Column, LogicalType
from cdx.dialects import connect, get_dialect
from cdx.kafka.config import client_config
from cdx.kafka.reading import read_to_end
from cdx.topics import dlq_topic
from tests.badinput.helpers import assert_clean_error, cli, snapshot
from tests.sink.helpers import Db, FakeRouter, pg_db, read_table, sqlite_db, write_topology

pytestmark = pytest.mark.integration

C = LogicalType
ITEMS = (Column("ID", C.INT64, primary_key=True), Column("CODE", C.STRING, length=20), Column("QTY", C.INT64))
SUBJOB = {"id": "Items", "hq_table": "dbo.ITEMS", "fields": ["ID", "CODE", "QTY"], "scheduled_by": ["1040"]}


def _create(db: Db, ddl: str) -> None:
    d = get_dialect(db.dialect)
    conn = connect(db.dialect, db.dsn)
    with d.transaction(conn):
        d.ensure_schema(conn, "ax")
        conn.execute(ddl.replace("{ITEMS}", d.qualified("ax", "ITEMS")))
    conn.close()


def _has_state(db: Db) -> bool:
    d = get_dialect(db.dialect)
    conn = connect(db.dialect, db.dsn)
    try:
        return d.table_exists(conn, *(("cdx", "cdx_state") if db.dialect != "sqlite" else (None, "cdx_state")))
    finally:
        conn.rollback()
        conn.close()


def _published(tmp: Path, kafka: str, dbs: list[Db], records: int = 20) -> tuple[Path, FakeRouter]:
    path, topo = write_topology(tmp, kafka, dbs, subjobs=[SUBJOB], partitions=1)
    router = FakeRouter(topo, partitions=1)
    for i in range(records):
        router.change("ITEMS", "c", {"ID": i, "CODE": f"c{i}", "QTY": i}, columns=ITEMS, subjob="Items")
    router.flush()
    return path, router


CONFLICTS: list[tuple[str, str, str, list[str]]] = [
    ("type conflict", "sqlite", 'CREATE TABLE {ITEMS} ("ID" BIGINT PRIMARY KEY, "CODE" VARCHAR(20), "QTY" BLOB)',
     ["s2 ax.ITEMS", "column QTY is BLOB, expected BIGINT"]),
    ("key conflict", "postgresql", 'CREATE TABLE {ITEMS} ("ID" bigint, "CODE" varchar(20), "QTY" bigint,'
                                   ' PRIMARY KEY ("ID", "CODE"))',
     ["ax.ITEMS", "primary key is (ID, CODE), expected (ID)"]),
    ("no primary key", "sqlite", 'CREATE TABLE {ITEMS} ("ID" BIGINT, "CODE" VARCHAR(20), "QTY" BIGINT)',
     ["ax.ITEMS", "primary key is missing, expected (ID)"]),
    ("string for a number", "postgresql", 'CREATE TABLE {ITEMS} ("ID" text PRIMARY KEY, "CODE" text, "QTY" bigint)',
     ["column ID is text, expected bigint"]),
]


@pytest.mark.parametrize(("dialect", "ddl", "expected"), [c[1:] for c in CONFLICTS], ids=[c[0] for c in CONFLICTS])
def test_channel_init_refuses_a_conflicting_table(dialect: str, ddl: str, expected: list[str], tmp_path: Path,
                                                  kafka: str, postgres_server: str) -> None:
    good = sqlite_db(tmp_path, "s1")
    bad = sqlite_db(tmp_path, "s2") if dialect == "sqlite" else pg_db(postgres_server, "s2")
    bad.id = "s2"
    _create(bad, ddl)
    path, _ = _published(tmp_path, kafka, [good, bad])
    before = snapshot(tmp_path)
    assert_clean_error(cli("channel", "init", "-t", path), "conflict with the topology", "nothing was written",
                       *expected, max_lines=4)
    assert not _has_state(bad) and not (tmp_path / "s1.db").exists()
    assert snapshot(tmp_path) == before


def test_channel_init_changes_nothing_while_one_database_is_unreachable(tmp_path: Path, kafka: str,
                                                                        postgres_server: str) -> None:
    good = sqlite_db(tmp_path, "s1")
    down = Db("s2", "postgresql", postgres_server.rsplit("/", 1)[0] + "/cdx_badinput_nosuch")
    path, _ = _published(tmp_path, kafka, [good, down])
    before = snapshot(tmp_path)
    assert_clean_error(cli("channel", "init", "-t", path), "the database of channel s2", "does not exist")
    assert snapshot(tmp_path) == before and not (tmp_path / "s1.db").exists()


def test_channel_bootstrap_refuses_a_conflicting_table(tmp_path: Path, kafka: str) -> None:
    db = sqlite_db(tmp_path, "s1")
    _create(db, 'CREATE TABLE {ITEMS} ("ID" BIGINT PRIMARY KEY, "CODE" VARCHAR(20), "QTY" DATE)')
    path, router = _published(tmp_path, kafka, [db], records=50)
    assert_clean_error(cli("channel", "bootstrap", "-c", "s1", "-t", path), "column QTY is DATE", max_lines=4)
    assert read_table("sqlite", db.dsn, "ax", "ITEMS") == {} and not _has_state(db)
    letters = [m for m in read_to_end(client_config(kafka), dlq_topic(router.prefix)) if m.value()]
    assert letters == []


def test_replay_of_a_group_topic_that_does_not_exist(tmp_path: Path, kafka: str) -> None:
    path, _ = write_topology(tmp_path, kafka, [sqlite_db(tmp_path, "s1")], subjobs=[SUBJOB], partitions=1)
    before = snapshot(tmp_path)
    assert_clean_error(cli("replay", "-c", "s1", "--from-beginning", "-t", path), "does not exist",
                       "nothing to replay")
    assert snapshot(tmp_path) == before


def test_replay_of_a_partition_the_topic_lacks(tmp_path: Path, kafka: str) -> None:
    path, _ = _published(tmp_path, kafka, [sqlite_db(tmp_path, "s1")])
    before = snapshot(tmp_path)
    assert_clean_error(cli("replay", "-c", "s1", "--from-beginning", "-p", "7", "-t", path),
                       "has no partition [7]", "it has [0]")
    assert snapshot(tmp_path) == before


def test_dlq_replay_of_an_offset_with_no_letter(tmp_path: Path, kafka: str) -> None:
    path, _ = _published(tmp_path, kafka, [sqlite_db(tmp_path, "s1")], records=1)
    before = snapshot(tmp_path)
    out = cli("dlq", "replay", "--offset", "12345", "-t", path)
    assert_clean_error(out, "no replayable channel dead letter at offset 12345")
    assert snapshot(tmp_path) == before
    listed = cli("dlq", "list", "--json", "-t", path)
    assert listed.exit_code == 0 and json.loads(listed.stdout) == []
