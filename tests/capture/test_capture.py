"""Capture against the real broker, on SQLite and PostgreSQL HQ databases."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from cdx.connectors.capture import metrics
from cdx.connectors.capture.connector import CaptureConnector
from cdx.connectors.capture.tracking import open_tracker
from cdx.dialects import connect, get_dialect
from cdx.errors import ConfigError
from tests.capture.helpers import last_state, make_hq, read_table, write_topology

pytestmark = pytest.mark.integration

DIALECTS = ["sqlite", "postgresql"]


@pytest.fixture(params=DIALECTS)
def hq(request, tmp_path: Path, kafka: str):
    dialect = request.param
    if dialect == "sqlite":
        dsn = f"sqlite:///{tmp_path}/hq.db"
    else:
        from cdx.infra.postgres import launcher

        server = request.getfixturevalue("postgres_server")
        dsn = launcher.create_database(server, f"cap_{tmp_path.name[-20:].lower().replace('-', '_')}")
    make_hq(dialect, dsn)
    path, topo = write_topology(tmp_path, kafka, dialect, dsn)
    tracker = open_tracker(dialect, dsn)
    tracker.enable(["dbo.ITEMS", "dbo.NOTES"])
    tracker.conn.close()
    return dialect, dsn, path, topo


def _sql(dialect: str, dsn: str, *statements: tuple[str, tuple]) -> None:
    d = get_dialect(dialect)
    conn = connect(dialect, dsn)
    items, notes = d.qualified("dbo", "ITEMS"), d.qualified("dbo", "NOTES")
    ph = "?" if dialect == "sqlite" else "%s"
    with d.transaction(conn):
        for sql, args in statements:
            conn.execute(sql.format(items=items, notes=notes, p=ph), args)
    conn.close()


def test_ops_in_commit_order_with_tombstones(hq) -> None:
    dialect, dsn, _path, topo = hq
    _sql(dialect, dsn, ("INSERT INTO {items} VALUES ('usrt', 'PRE', 'before start', 1.5, 1)", ()))
    cap = CaptureConnector(topo)
    cap.setup()
    assert cap.poll_once() == 1  # the snapshot of ITEMS (NOTES is empty)
    _sql(dialect, dsn,
         ("INSERT INTO {items} VALUES ('usrt', 'A', 'apple', 1.25, 3)", ()),
         ("INSERT INTO {items} VALUES ('usrt', 'B', 'banana', 0.5, 7)", ()))
    cap.poll_once()
    _sql(dialect, dsn, ("UPDATE {items} SET \"PRICE\" = 2.5 WHERE \"ITEMID\" = 'A'", ()))
    _sql(dialect, dsn, ("DELETE FROM {items} WHERE \"ITEMID\" = 'B'", ()))
    cap.poll_once()
    cap.close()

    records = read_table(topo, "ITEMS")
    seq = [(k["ITEMID"], env["op"] if env else None) for k, env in records]
    by_key: dict[str, list] = {}
    for item, op in seq:
        by_key.setdefault(item, []).append(op)
    assert by_key == {"PRE": ["r"], "A": ["c", "u"], "B": ["c", "d", None]}
    final = last_state(records)
    assert [v["PRICE"] for v in final.values() if v["ITEMID"] == "A"] == [Decimal("2.5000")]
    versions = [env["source"]["change_version"] for _k, env in records if env]
    a_versions = [env["source"]["change_version"] for k, env in records if env and k["ITEMID"] == "A"]
    assert a_versions == sorted(a_versions) and len(set(versions)) >= 3
    env = next(env for k, env in records if env and env["op"] == "d")
    assert env["before"]["ITEMID"] == "B" and env["after"] is None
    assert env["source"]["table"] == "ITEMS" and env["source"]["db"] == "hq"


def test_restart_resumes_without_duplicates(hq) -> None:
    dialect, dsn, _path, topo = hq
    cap = CaptureConnector(topo)
    cap.setup()
    cap.poll_once()
    _sql(dialect, dsn, *[("INSERT INTO {notes} VALUES ({p}, {p})", (i, f"n{i}")) for i in range(50)])
    cap.poll_once()
    cap.close()
    _sql(dialect, dsn, *[("UPDATE {notes} SET \"TXT\" = {p} WHERE \"ID\" = {p}", (f"m{i}", i)) for i in range(10)])
    again = CaptureConnector(topo)
    again.setup()
    assert again.poll_once() == 10  # only the new changes: no snapshot, nothing re-sent
    again.close()
    records = read_table(topo, "NOTES")
    assert len(records) == 60
    assert len({(k["ID"], env["source"]["change_version"]) for k, env in records if env}) == 60


def test_expired_position_resnapshots_and_deletes_missed_rows(hq) -> None:
    dialect, dsn, _path, topo = hq
    _sql(dialect, dsn, *[("INSERT INTO {notes} VALUES ({p}, {p})", (i, f"n{i}")) for i in range(5)])
    cap = CaptureConnector(topo)
    cap.setup()
    cap.poll_once()
    _sql(dialect, dsn, ("DELETE FROM {notes} WHERE \"ID\" = 3", ()), ("INSERT INTO {notes} VALUES (9, 'x')", ()))
    tracker = open_tracker(dialect, dsn)
    from datetime import timedelta

    tracker.current_version()  # PostgreSQL stamps committed transactions with versions here
    tracker.cleanup(timedelta(0))
    tracker.conn.close()
    before = metrics.RESNAPSHOTS.labels("dbo.NOTES")._value.get()
    cap.poll_once()
    cap.close()
    assert metrics.RESNAPSHOTS.labels("dbo.NOTES")._value.get() == before + 1
    state = last_state(read_table(topo, "NOTES"))
    assert sorted(v["ID"] for v in state.values()) == [0, 1, 2, 4, 9]


def test_added_column_gives_new_schema_old_readers_still_read(hq) -> None:
    dialect, dsn, _path, topo = hq
    cap = CaptureConnector(topo)
    cap.setup()
    cap.poll_once()
    _sql(dialect, dsn, ("INSERT INTO {notes} VALUES (1, 'one')", ()))
    cap.poll_once()
    _sql(dialect, dsn, ("ALTER TABLE {notes} ADD COLUMN \"COLOR\" VARCHAR(10)", ()),
         ("INSERT INTO {notes} VALUES (2, 'two', 'red')", ()))
    cap.poll_once()
    cap.close()
    records = read_table(topo, "NOTES")
    afters = {env["after"]["ID"]: env["after"] for _k, env in records if env}
    assert afters[1] == {"ID": 1, "TXT": "one"}  # written with the old schema, read as it was written
    assert afters[2] == {"ID": 2, "TXT": "two", "COLOR": "red"}


def test_table_without_primary_key_is_a_clear_error(hq) -> None:
    dialect, dsn, _path, topo = hq
    _sql(dialect, dsn, ("DROP TABLE {notes}", ()))
    _sql(dialect, dsn, ("CREATE TABLE {notes} (\"ID\" INTEGER, \"TXT\" VARCHAR(10))", ()))
    cap = CaptureConnector(topo)
    with pytest.raises(ConfigError, match="no primary key"):
        cap.setup()


def test_missing_table_is_a_clear_error_from_the_cli(hq) -> None:
    import subprocess
    import sys

    dialect, dsn, path, _topo = hq
    _sql(dialect, dsn, ("DROP TABLE {notes}", ()))
    result = subprocess.run([sys.executable, "-m", "cdx.cli.main", "capture", "--topology", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr
