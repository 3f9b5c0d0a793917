"""``cdx channel bootstrap``: a channel (and an offline register) added later receives the full
current state of its compacted group topic, with a progress bar on a terminal, and the command
exits once caught up; it refuses a database whose sink is running; killed midway and run again,
it ends with every row once."""

from __future__ import annotations

import io
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from rich.console import Console

from cdx.cli import sink_cmd
from cdx.connectors.sink.apply import BULK_ROWS
from cdx.connectors.sink.init import init_databases
from cdx.dialects import connect
from cdx.kafka.admin import COMPACTED, TopicSpec, ensure_topics
from cdx.kafka.config import client_config
from cdx.topics import group_topic
from tests.sink.helpers import (
    Db,
    FakeRouter,
    assert_tables_equal,
    expected_state,
    pg_db,
    sqlite_db,
    stored_offsets,
    wait_until,
    workload,
    write_topology,
)
from tests.sink_ops.helpers import by_db, caught_up, cli, host_state, sessions_of, status_json

pytestmark = pytest.mark.integration


def test_bootstrap_new_channel_and_register(tmp_path: Path, kafka: str, postgres_server: str, run_host,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    c1 = sqlite_db(tmp_path, "c1", recid=1)
    _, first = write_topology(tmp_path, kafka, [c1])
    prefix = first.kafka.topic_prefix
    ensure_topics(client_config(kafka), [TopicSpec(group_topic(prefix, "g1"), 3, 1, COMPACTED)])
    router = FakeRouter(first)
    workload(router, 3000, seed=8, keys=250, resend_every=400)
    router.flush()
    host = run_host(first, ["c1"])
    wait_until(lambda: caught_up(host, router), 60, "c1", lambda: host_state(host))

    # later: a new channel with an offline register joins the group
    c2 = pg_db(postgres_server, "c2", recid=2)
    c2.registers.append(sqlite_db(tmp_path, "c2r1"))
    path, topo = write_topology(tmp_path, kafka, [c1, c2], prefix=prefix)
    res = cli("channel", "bootstrap", "--topology", path, "--channel", "c1")
    assert res.exit_code == 1 and "the sink of c1 is running" in res.output, res.output

    screen = io.StringIO()
    monkeypatch.setattr(sink_cmd, "console", Console(file=screen, force_terminal=True, width=120))
    before = set(threading.enumerate())
    res = cli("channel", "bootstrap", "--topology", path, "--channel", "c2", "--channel", "c2r1", "--timeout", "60")
    assert res.exit_code == 0, res.output + screen.getvalue()
    # the bootstrap's host ended every thread it started (its own names: sinkN-feed-1, sinkN-offsets, ...)
    left = [t.name for t in set(threading.enumerate()) - before if t.name.startswith("sink")]
    assert not left, left
    shown = screen.getvalue()
    assert "bootstrap c2" in shown and "bootstrap c2r1" in shown and "caught up" in shown
    total = sum(router.ends().values())
    assert f"{total}/{total}" in shown
    assert_tables_equal(c2, expected_state(router.sent, recid=2))
    assert_tables_equal(c2.registers[0], expected_state(router.sent, recid=2))
    assert sum(s.records for s in sessions_of(c2)) == total
    st = by_db(status_json(path, "--no-uploads"))
    assert st["c2"]["lag_records"] == 0 and st["c2r1"]["lag_records"] == 0
    assert st["c2"]["sink_running"] is False  # the one-shot sink left its group

    # the channel keeps up afterwards with its regular sink
    workload(router, 300, seed=9, keys=250)
    router.flush()
    host2 = run_host(topo, ["c2"])
    wait_until(lambda: caught_up(host2, router), 60, "c2 incremental", lambda: host_state(host2))
    assert_tables_equal(c2, expected_state(router.sent, recid=2))


PG_LOG = """
CREATE TABLE applied_log (id bigint NOT NULL, ver bigint NOT NULL);
CREATE FUNCTION log_applied() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN INSERT INTO applied_log VALUES (NEW."ID", NEW."VER"); RETURN NULL; END $$;
CREATE TRIGGER p_log AFTER INSERT OR UPDATE ON ax."PARENT" FOR EACH ROW EXECUTE FUNCTION log_applied();
"""
SQLITE_LOG = """
CREATE TABLE applied_log (id INTEGER NOT NULL, ver INTEGER NOT NULL);
CREATE TRIGGER p_ins AFTER INSERT ON ax_PARENT BEGIN INSERT INTO applied_log VALUES (new.ID, new.VER); END;
CREATE TRIGGER p_upd AFTER UPDATE ON ax_PARENT BEGIN INSERT INTO applied_log VALUES (new.ID, new.VER); END;
"""


def _applied_log(db: Db) -> list[tuple[int, int]]:
    conn = connect(db.dialect, db.dsn)
    try:
        cur = conn.cursor()
        cur.execute("SELECT id, ver FROM applied_log")
        return [(int(i), int(v)) for i, v in cur.fetchall()]
    finally:
        conn.rollback()
        conn.close()


@pytest.mark.parametrize("dialect", ["postgresql", "sqlite"])
def test_bootstrap_killed_midway_resumes_with_every_row_once(dialect: str, tmp_path: Path, kafka: str,
                                                             postgres_server: str) -> None:
    """A bulk bootstrap (batches of ``BULK_ROWS``: PostgreSQL's ``COPY`` path, then its upsert fallback once keys
    repeat across batches) SIGKILLed after its first batch and run again: every row once, no change applied twice
    (triggers log every row version written), the offsets at the ends."""
    db = pg_db(postgres_server, "bkill") if dialect == "postgresql" else sqlite_db(tmp_path, "bkill")
    path, topo = write_topology(tmp_path, kafka, [db])
    router = FakeRouter(topo)
    for i in range(BULK_ROWS * 4):  # distinct keys: COPY into the table
        router.change("PARENT", "c", {"DATAAREAID": "usrt", "ID": i, "NAME": f"p{i}", "PRICE": None, "VER": -1,
                                      "TS": None})
    workload(router, 3000, seed=5, keys=BULK_ROWS * 4, resend_every=400, tables=("PARENT",))  # keys again
    router.flush()
    init_databases(topo, [db.id])
    conn = connect(db.dialect, db.dsn)
    if dialect == "postgresql":
        conn.execute(PG_LOG)
        conn.commit()
    else:
        conn.executescript(SQLITE_LOG)
    conn.close()
    ends = router.ends()
    argv = [sys.executable, "-m", "cdx.cli.main", "channel", "bootstrap", "--topology", str(path), "--channel", db.id,
            "--batch-size", str(BULK_ROWS), "--wait", "30"]
    log = tmp_path / "bootstrap.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_until(lambda: sum(stored_offsets(db, router.topic).values()) > 0 or proc.poll() is not None, 300,
                       "the first bootstrap batch", lambda: log.read_text()[-3000:])
        finally:
            proc.kill()
            proc.wait()
        at_kill = stored_offsets(db, router.topic)
        assert 0 < sum(at_kill.values()) < sum(ends.values()), (at_kill, ends, log.read_text()[-3000:])
        again = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, timeout=600)
    assert again.returncode == 0, log.read_text()[-3000:]
    assert all(stored_offsets(db, router.topic).get(p, 0) >= e for p, e in ends.items()), log.read_text()[-3000:]
    assert_tables_equal(db, expected_state(router.sent))
    applied = _applied_log(db)
    assert len(applied) == len(set(applied)), "a change was applied twice"
    last: dict[int, int] = {}
    for key, ver in applied:
        assert ver > last.get(key, -2), f"{key}: version {ver} applied after {last[key]}"
        last[key] = ver
    assert router.resent > 0 and {k[1] for k in expected_state(router.sent)["PARENT"]} <= set(last)
