"""``ChannelLock`` against real databases, without Kafka: a SQLite lease (taken, refused with the holder's
name, expired, lost and then refused in the batch transaction) and a PostgreSQL advisory lock."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from cdx.connectors.sink.lock import ChannelLock, ChannelLocked
from cdx.dialects import connect, get_dialect


def _open(dialect: str, dsn: str):  # type: ignore[no-untyped-def]
    d = get_dialect(dialect)
    conn = connect(dialect, dsn)
    with d.transaction(conn):
        d.ensure_state_table(conn)
    return d, conn


def test_sqlite_lease_names_the_holder_expires_and_a_lost_lease_refuses_the_batch(tmp_path: Path) -> None:
    dsn = f"sqlite:///{tmp_path}/c.db"
    d, one = _open("sqlite", dsn)
    _, two = _open("sqlite", dsn)
    a = ChannelLock(d, "p-sink-c1", "c1", lease=0.5, holder="cdx sink pid 1 on A")
    b = ChannelLock(d, "p-sink-c1", "c1", lease=0.5, holder="cdx sink pid 2 on B")
    a.acquire(one)
    with pytest.raises(ChannelLocked, match=r"^channel c1: another process is applying to this channel database "
                                            r"\(held by cdx sink pid 1 on A since .*\); standing by until it stops$"):
        b.acquire(two)
    time.sleep(0.6)  # A's lease runs out without renewal
    b.acquire(two)
    with pytest.raises(ChannelLocked, match="lost its lease"), d.transaction(one):
        a.confirm(one)  # A's next batch: rolled back
    b.release(two)
    a.acquire(one)  # released: taken at once
    one.close()
    two.close()


def test_postgresql_advisory_lock_lives_with_the_connection(postgres: str) -> None:
    d, one = _open("postgresql", postgres)
    _, two = _open("postgresql", postgres)
    a = ChannelLock(d, "p-sink-c1", "c1", holder="cdx sink pid 1 on A")
    b = ChannelLock(d, "p-sink-c1", "c1", holder="cdx sink pid 2 on B")
    a.acquire(one)
    with pytest.raises(ChannelLocked, match=r"held by cdx sink pid 1 on A"):
        b.acquire(two)
    with d.transaction(one):
        a.confirm(one)
    one.close()  # a killed holder's connection ends, and its lock with it (once its server process exits)
    deadline = time.monotonic() + 30
    while True:
        try:
            b.acquire(two)
            break
        except ChannelLocked:
            assert time.monotonic() < deadline, "the lock outlived its connection"
            time.sleep(0.2)
    b.release(two)
    two.close()


@pytest.mark.integration
@pytest.mark.parametrize("command", [["channel", "resync"], ["replay", "--from-beginning"]])
def test_commands_that_need_the_sink_stopped_refuse_while_another_process_holds_the_lock(
        command: list[str], tmp_path: Path, kafka: str) -> None:
    from cdx.kafka.admin import TopicSpec, ensure_topics
    from cdx.kafka.config import client_config
    from tests.sink.helpers import sqlite_db, write_topology
    from tests.sink_ops.helpers import cli

    db = sqlite_db(tmp_path, "c1")
    path, topo = write_topology(tmp_path, kafka, [db])
    ensure_topics(client_config(kafka), [TopicSpec(f"{topo.kafka.topic_prefix}.group.g1", 1)])
    d, conn = _open("sqlite", db.dsn)
    ChannelLock(d, f"{topo.kafka.topic_prefix}-sink-c1", "c1", holder="cdx sink pid 4242 on other-host").acquire(conn)
    res = cli(*command, "--topology", str(path), "--channel", "c1")
    assert res.exit_code == 1
    assert res.output.startswith("error: channel c1: another process is applying to this channel database (held by"
                                 " cdx sink pid 4242 on other-host since "), res.output
    assert res.output.rstrip().endswith("; stop it first") and len(res.output.strip().splitlines()) == 1
    conn.close()
