"""Poison records -> dead-letter topic -> ``cdx dlq list`` -> a replay that fails again stays
dead-lettered with the new error -> fix the database -> ``cdx dlq replay`` applies each letter
once (a second replay is a no-op), skips the one a later change of its key made stale; while
the sink keeps running."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cdx.codec import Column, LogicalType
from cdx.dialects import connect, get_dialect
from tests.sink.helpers import FakeRouter, pg_db, read_table, sqlite_db, wait_until, write_topology
from tests.sink_ops.helpers import by_db, caught_up, cli, host_state, sessions_of, status_json

pytestmark = pytest.mark.integration

C = LogicalType
ITEMS = (Column("ID", C.INT64, primary_key=True), Column("QTY", C.INT64), Column("NAME", C.STRING))
SUBJOBS = [{"id": "Items", "hq_table": "dbo.ITEMS", "fields": ["ID", "QTY", "NAME"], "scheduled_by": ["1040"]}]


def _refuse_negative(dialect: str, dsn: str) -> None:
    d = get_dialect(dialect)
    conn = connect(dialect, dsn)
    with d.transaction(conn):
        d.ensure_schema(conn, "ax")
        t = d.qualified("ax", "ITEMS")
        if dialect == "sqlite":
            conn.execute(f'CREATE TABLE {t} ("ID" BIGINT PRIMARY KEY, "QTY" BIGINT, "NAME" TEXT)')
            for event in ("INSERT", "UPDATE"):
                conn.execute(f"CREATE TRIGGER no_neg_{event.lower()} BEFORE {event} ON {t} WHEN NEW.QTY < 0"
                             " BEGIN SELECT RAISE(ABORT, 'negative quantity'); END")
        else:
            conn.execute(f'CREATE TABLE {t} ("ID" BIGINT PRIMARY KEY, "QTY" BIGINT CONSTRAINT qty_nonneg'
                         ' CHECK ("QTY" >= 0), "NAME" TEXT)')
    conn.close()


def _fix(dialect: str, dsn: str) -> None:
    d = get_dialect(dialect)
    conn = connect(dialect, dsn)
    with d.transaction(conn):
        if dialect == "sqlite":
            conn.execute("DROP TRIGGER no_neg_insert")
            conn.execute("DROP TRIGGER no_neg_update")
        else:
            conn.execute('ALTER TABLE ax."ITEMS" DROP CONSTRAINT qty_nonneg')
    conn.close()


def _letters(path: Path, *args: str) -> list[dict]:
    res = cli("dlq", "list", "--topology", path, "--json", *args)
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_poison_dlq_list_fix_replay_once(dialect: str, tmp_path: Path, kafka: str, postgres_server: str,
                                         run_host) -> None:
    db = sqlite_db(tmp_path, "c1") if dialect == "sqlite" else pg_db(postgres_server, "dlq")
    db.id = "c1"
    _refuse_negative(dialect, db.dsn)
    path, topo = write_topology(tmp_path, kafka, [db], subjobs=SUBJOBS, partitions=2)
    router = FakeRouter(topo, partitions=2)
    for i in range(30):
        router.change("ITEMS", "c", {"ID": i, "QTY": -i if i in (7, 8, 9) else i, "NAME": f"n{i}"}, columns=ITEMS,
                      subjob="Items")
    router.change("ITEMS", "u", {"ID": 8, "QTY": 8, "NAME": "later"}, subjob="Items")  # makes ID 8's letter stale
    router.resend([s for s in router.sent if s.key == {"ID": 9}])  # a router re-send: not a newer change
    router.flush()
    host = run_host(topo)
    wait_until(lambda: caught_up(host, router), 60, "the sink to pass the poison records", lambda: host_state(host))
    assert host.sinks[0].totals.dead_lettered == 3 and host.sinks[0].status == "running"

    letters = _letters(path, "--channel", "c1")
    assert len(letters) == 3 and {x["status"] for x in letters} == {"pending"}
    by_id = {x["key"]["ID"]: x for x in letters}
    assert set(by_id) == {7, 8, 9}
    a = by_id[7]
    assert a["channel"] == "c1" and a["table"] == "ax.ITEMS" and a["component"] == "sink" and a["op"] == "c"
    assert a["group_topic"] == router.topic and a["offset"] >= 0 and a["partition"] in (0, 1)
    assert a["source"]["topic"].endswith(".hq.dbo.ITEMS") and a["time"]
    assert ("negative" in a["error"]) if dialect == "sqlite" else ("qty_nonneg" in a["error"])
    unknown = cli("dlq", "list", "--topology", path, "--json", "--channel", "zz")  # a typo, not an empty list
    assert unknown.exit_code == 1 and "no channel or offline register 'zz'" in unknown.stderr, unknown.output

    # replayed before the fix: refused again, dead-lettered again with the new error
    res = cli("dlq", "replay", "--topology", path, "--offset", by_id[9]["dlq_offset"])
    assert res.exit_code == 1 and "failed again" in res.output, res.output
    letters = _letters(path)
    assert len(letters) == 4
    again = letters[-1]
    assert again["replay_of"] == by_id[9]["dlq_offset"] and again["key"] == {"ID": 9} and again["status"] == "pending"
    assert {x["dlq_offset"]: x["status"] for x in letters}[by_id[9]["dlq_offset"]] == "superseded"

    _fix(dialect, db.dsn)
    res = cli("dlq", "replay", "--topology", path, "--channel", "c1", "--all", "--json")
    assert res.exit_code == 0, res.output
    outcomes = {o["offset"]: o["result"] for o in json.loads(res.stdout)}
    assert outcomes == {by_id[7]["offset"]: "applied", by_id[8]["offset"]: "stale", by_id[9]["offset"]: "applied"}
    rows = read_table(dialect, db.dsn, "ax", "ITEMS")
    assert rows[(7,)]["QTY"] == -7 and rows[(8,)]["QTY"] == 8 and rows[(9,)]["QTY"] == -9 and len(rows) == 30

    # twice is a no-op
    res = cli("dlq", "replay", "--topology", path, "--all", "--json")
    assert res.exit_code == 0, res.output
    assert {o["result"] for o in json.loads(res.stdout)} == {"already replayed"}
    assert read_table(dialect, db.dsn, "ax", "ITEMS") == rows
    statuses = {x["dlq_offset"]: x["status"] for x in _letters(path)}
    assert sorted(statuses.values()) == ["replayed", "replayed", "stale", "superseded"]
    assert _letters(path, "--pending") == []

    sessions = sessions_of(db)
    replays = [s for s in sessions if s.kind == "dlq-replay"]
    assert [s.status for s in replays] == ["Failed", "Applied", "Applied"]
    assert sum(s.rows_upserted for s in replays) == 2
    assert any(s.kind == "batch" and s.status == "Failed" and "isolating" in (s.error or "") for s in sessions)
    st = by_db(status_json(path, "--no-uploads"))["c1"]
    assert st["dead_letters"] == 3 and st["dead_letters_pending"] == 0
    assert "failed" in st["last_error"]["error"] or "refused" in st["last_error"]["error"]

    # the sink went on all along, and still does
    router.change("ITEMS", "u", {"ID": 7, "QTY": 70, "NAME": "n7"}, subjob="Items")
    router.flush()
    wait_until(lambda: caught_up(host, router), 30, "a later change")
    assert read_table(dialect, db.dsn, "ax", "ITEMS")[(7,)]["QTY"] == 70

    res = cli("dlq", "list", "--topology", path)
    assert res.exit_code == 0 and "ax.ITEMS" in res.output, res.output
    res = cli("dlq", "replay", "--topology", path)
    assert res.exit_code == 1 and "--all" in res.output
    res = cli("dlq", "replay", "--topology", path, "--offset", "999999")
    assert res.exit_code == 1 and "no replayable" in res.output
