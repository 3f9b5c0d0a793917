"""Parent/child order under real foreign keys, poison records to the dead-letter topic, columns
added by a newer writer schema, and ``cdx channel init``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cdx.cli.main import app
from cdx.codec import Column, LogicalType
from cdx.dialects import connect, get_dialect
from cdx.kafka.config import client_config
from cdx.kafka.reading import read_to_end
from cdx.topics import dlq_topic
from tests.sink.helpers import Db, FakeRouter, pg_db, read_table, sqlite_db, wait_until, write_topology

pytestmark = pytest.mark.integration

C = LogicalType
P = (Column("ID", C.INT64, primary_key=True), Column("NAME", C.STRING))
K = (Column("ID", C.INT64, primary_key=True), Column("PARENTID", C.INT64))
ITEMS = (Column("ID", C.INT64, primary_key=True), Column("QTY", C.INT64), Column("NAME", C.STRING))


def _subjob(sid: str, table: str, fields: list[str]) -> dict:
    return {"id": sid, "hq_table": f"dbo.{table}", "fields": fields, "scheduled_by": ["1040"]}


def _caught_up(host, router: FakeRouter) -> bool:
    ends = router.ends()
    return all(all(s.state.offsets.get(p, 0) >= e for p, e in ends.items() if e) for s in host.sinks)


def _dead_letters(kafka: str, prefix: str) -> list[dict]:
    return [json.loads(m.value() or b"") for m in read_to_end(client_config(kafka), dlq_topic(prefix)) if m.value()]


@pytest.mark.parametrize("declared", ["parents-first", "children-first"])
def test_parent_child_order_with_foreign_keys(declared: str, tmp_path: Path, kafka: str, postgres_server: str,
                                              run_host) -> None:
    db = pg_db(postgres_server, "fk")
    conn = connect("postgresql", db.dsn)
    conn.execute('CREATE SCHEMA ax; CREATE TABLE ax."P" ("ID" bigint PRIMARY KEY, "NAME" text);'
                 ' CREATE TABLE ax."K" ("ID" bigint PRIMARY KEY, "PARENTID" bigint REFERENCES ax."P"("ID"))')
    conn.commit()
    conn.close()
    subjobs = [_subjob("P", "P", ["ID", "NAME"]), _subjob("K", "K", ["ID", "PARENTID"])]
    if declared == "children-first":
        subjobs.reverse()
    _, topo = write_topology(tmp_path, kafka, [db], subjobs=subjobs, partitions=1)
    router = FakeRouter(topo, partitions=1)
    # phase 1, one batch: the child's insert comes before its parent's (other source topics)
    router.change("K", "c", {"ID": 1, "PARENTID": 10}, columns=K, subjob="K")
    router.change("P", "c", {"ID": 10, "NAME": "ten"}, columns=P, subjob="P")
    router.flush()
    host = run_host(topo)
    wait_until(lambda: _caught_up(host, router), 30, "phase 1")
    host.stop()
    assert host.wait(30)
    # phase 2, one batch: the parent's delete comes before its child's; a new child before its parent
    router.change("P", "d", {"ID": 10}, subjob="P")
    router.change("K", "d", {"ID": 1}, subjob="K")
    router.change("K", "c", {"ID": 2, "PARENTID": 20}, subjob="K")
    router.change("P", "c", {"ID": 20, "NAME": "twenty"}, subjob="P")
    router.flush()
    host2 = run_host(topo)
    wait_until(lambda: _caught_up(host2, router), 30, "phase 2")
    dead = host.sinks[0].totals.dead_lettered + host2.sinks[0].totals.dead_lettered
    if declared == "parents-first":
        assert dead == 0
        assert set(read_table("postgresql", db.dsn, "ax", "P")) == {(20,)}
        assert set(read_table("postgresql", db.dsn, "ax", "K")) == {(2,)}
    else:  # the control: declaring children first breaks the foreign keys, and nothing is lost silently
        assert dead >= 2
        letters = _dead_letters(kafka, topo.kafka.topic_prefix)
        assert {((d["table"] or "").rpartition(".")[2], d["op"]) for d in letters} >= {("K", "c")}


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_poison_record_goes_to_dlq_and_channel_moves_on(dialect: str, tmp_path: Path, kafka: str,
                                                        postgres_server: str, run_host) -> None:
    db = sqlite_db(tmp_path, "c1") if dialect == "sqlite" else pg_db(postgres_server, "poison")
    d = get_dialect(dialect)
    conn = connect(dialect, db.dsn)
    with d.transaction(conn):
        d.ensure_schema(conn, "ax")
        conn.execute(f'CREATE TABLE {d.qualified("ax", "ITEMS")} ("ID" BIGINT PRIMARY KEY, "QTY" BIGINT'
                     ' CHECK ("QTY" >= 0), "NAME" TEXT)')
    conn.close()
    _, topo = write_topology(tmp_path, kafka, [db], subjobs=[_subjob("Items", "ITEMS", ["ID", "QTY", "NAME"])],
                             partitions=2)
    router = FakeRouter(topo, partitions=2)
    for i in range(300):
        router.change("ITEMS", "c", {"ID": i, "QTY": -1 if i == 137 else i, "NAME": f"n{i}"}, columns=ITEMS,
                      subjob="Items")
    router.raw(b"not avro", b"not avro either")
    for i in range(300, 400):
        router.change("ITEMS", "c", {"ID": i, "QTY": i, "NAME": f"n{i}"}, subjob="Items")
    router.flush()
    host = run_host(topo)
    wait_until(lambda: _caught_up(host, router), 60, "the sink to pass the poison records",
               lambda: str([(s.status, s.last_error) for s in host.sinks]))
    sink = host.sinks[0]
    assert sink.status == "running" and sink.totals.dead_lettered == 2 and sink.totals.applied == 399
    rows = read_table(dialect, db.dsn, "ax", "ITEMS")
    assert set(rows) == {(i,) for i in range(400) if i != 137}
    letters = _dead_letters(kafka, topo.kafka.topic_prefix)
    assert len(letters) == 2
    bad = next(x for x in letters if (x["table"] or "").endswith("ITEMS"))
    assert bad["channel"] == "c1" if dialect == "sqlite" else bad["channel"] == db.id
    assert bad["key"] == {"ID": 137} and bad["extra"]["hq"]["topic"].endswith(".hq.dbo.ITEMS")
    assert bad["component"] == "sink" and bad["version"] == 1 and bad["extra"]["kind"] == "channel"
    assert bad["source"]["topic"] == router.topic and bad["source"]["offset"] >= 0 and "check" in bad["error"].lower()
    undecodable = next(x for x in letters if x["table"] is None)
    assert undecodable["error"].startswith("cannot decode") and undecodable["record"]["value_b64"]
    # restarted: nothing is applied or dead-lettered again
    host.stop()
    assert host.wait(30)
    host2 = run_host(topo)
    router.change("ITEMS", "c", {"ID": 1000, "QTY": 1, "NAME": "late"}, subjob="Items")
    router.flush()
    wait_until(lambda: _caught_up(host2, router), 30, "restart")
    assert host2.sinks[0].totals.applied == 1 and host2.sinks[0].totals.dead_lettered == 0
    assert len(_dead_letters(kafka, topo.kafka.topic_prefix)) == 2


def test_newer_schema_adds_a_column_and_channel_init(tmp_path: Path, kafka: str, run_host) -> None:
    db = sqlite_db(tmp_path, "c1")
    other = Db("c2", "sqlite", f"sqlite:///{tmp_path}/c2.db")
    path, topo = write_topology(tmp_path, kafka, [db, other],
                                subjobs=[_subjob("Items", "ITEMS", ["ID", "QTY", "NAME"]),
                                         _subjob("Later", "LATER", ["ID"])], partitions=1)
    router = FakeRouter(topo, partitions=1)
    for i in range(10):
        router.change("ITEMS", "c", {"ID": i, "QTY": i, "NAME": f"n{i}"}, columns=ITEMS, subjob="Items")
    router.flush()

    cli = CliRunner()
    res = cli.invoke(app, ["channel", "init", "--topology", str(path), "--channel", "c2"])
    assert res.exit_code == 0, res.output
    assert "1 created" in res.output and "pending" in res.output and "LATER" in res.output
    d = get_dialect("sqlite")
    conn = connect("sqlite", other.dsn)
    cols = {c.name: c for c in d.introspect_columns(conn, "ax", "ITEMS")}
    assert cols["ID"].primary_key and not cols["ID"].nullable and cols["QTY"].logical_type == "int64"
    assert d.read_state(conn, "missing") == {} and d.table_exists(conn, None, "cdx_state")
    conn.close()

    host = run_host(topo, ["c1"])
    wait_until(lambda: _caught_up(host, router), 30, "v1 records")
    wider = (*ITEMS, Column("COLOR", C.STRING, length=10))
    for i in range(5, 15):
        router.change("ITEMS", "u" if i < 10 else "c", {"ID": i, "QTY": i, "NAME": f"n{i}", "COLOR": f"c{i}"},
                      columns=wider, subjob="Items")
    router.flush()
    wait_until(lambda: _caught_up(host, router), 30, "v2 records")
    assert host.sinks[0].status == "running", host.sinks[0].last_error
    rows = read_table("sqlite", db.dsn, "ax", "ITEMS")
    assert rows[(3,)]["COLOR"] is None and rows[(12,)]["COLOR"] == "c12" and len(rows) == 15
    # old-schema records after the new column exist still apply (their rows keep COLOR)
    router.change("ITEMS", "u", {"ID": 12, "QTY": 99, "NAME": "old"}, columns=ITEMS, subjob="Items")
    router.flush()
    wait_until(lambda: _caught_up(host, router), 30, "old-schema record")
    assert read_table("sqlite", db.dsn, "ax", "ITEMS")[(12,)] == {"ID": 12, "QTY": 99, "NAME": "old", "COLOR": "c12"}

    res = cli.invoke(app, ["channel", "init", "--topology", str(path), "--channel", "c2"])
    assert res.exit_code == 0, res.output
    assert "1 columns added" in res.output and "ITEMS.COLOR" in res.output
    res = cli.invoke(app, ["channel", "init", "--topology", str(path), "--channel", "nope"])
    assert res.exit_code == 1 and "no channel or offline register 'nope'" in res.output
    res = cli.invoke(app, ["sink", "--topology", str(tmp_path / "missing.yaml")])
    assert res.exit_code == 1 and "not found" in res.output and "Traceback" not in res.output
