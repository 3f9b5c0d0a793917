"""``cdx channel init`` (and so ``cdx channel bootstrap``) runs the pending extension scripts first."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from cdx.connectors.sink.init import init_databases
from cdx.errors import FatalError
from tests.migrate.helpers import topology, write

pytestmark = pytest.mark.integration


def test_init_runs_pending_scripts_before_creating_tables(tmp_path: Path, kafka: str) -> None:
    scripts = write(tmp_path / "scripts", {
        "0001_a.sqlite.sql": "CREATE TABLE ext_A (ID INTEGER NOT NULL PRIMARY KEY);\n"})
    topo = topology(tmp_path, kafka=kafka, scripts=str(scripts))
    init_databases(topo, ["store-1-pos-1"])
    with sqlite3.connect(tmp_path / "pos-1.db") as conn:
        assert conn.execute("SELECT script FROM cdx_extension_history").fetchall() == [("0001_a.sqlite.sql",)]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"ext_A", "cdx_state"} <= tables


def test_init_stops_before_any_table_when_a_script_fails(tmp_path: Path, kafka: str) -> None:
    scripts = write(tmp_path / "scripts", {"0001_bad.sqlite.sql": "INSERT INTO ext_NOPE VALUES (1);\n"})
    topo = topology(tmp_path, kafka=kafka, scripts=str(scripts))
    with pytest.raises(FatalError, match=r"extension scripts failed, so no tables were created.*ext_NOPE"):
        init_databases(topo, ["store-1"])
    with sqlite3.connect(tmp_path / "store-1.db") as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "cdx_state" not in tables


def test_sink_host_runs_the_scripts_first_and_refuses_a_database_whose_script_fails(
        tmp_path: Path, kafka: str) -> None:
    from cdx.connectors.sink.host import SinkHost
    from cdx.connectors.sink.runner import SinkSettings

    scripts = write(tmp_path / "scripts", {
        "0001_a.sqlite.sql": "CREATE TABLE ext_A (ID INTEGER NOT NULL PRIMARY KEY);\n"})
    topo = topology(tmp_path, kafka=kafka, scripts=str(scripts))
    with sqlite3.connect(tmp_path / "store-1.db") as conn:
        conn.execute("CREATE TABLE ext_A (ID INTEGER NOT NULL PRIMARY KEY)")  # so 0001 fails on store-1 only
    host = SinkHost(topo, ["store-1", "store-1-pos-1"], SinkSettings(poll_timeout=0.1))
    host.setup()
    host.start()
    try:
        failed = None
        for _ in range(200):
            failed = next((s for s in host.sinks if s.status == "failed"), None)
            register = next(s for s in host.sinks if s.name == "store-1-pos-1")
            if failed is not None and register.status == "running":
                break
            threading.Event().wait(0.1)
        assert failed is not None and failed.name == "store-1"
        assert "0001_a.sqlite.sql failed" in (failed.last_error or "")
        with sqlite3.connect(tmp_path / "pos-1.db") as conn:
            assert conn.execute("SELECT script FROM cdx_extension_history").fetchall() == [("0001_a.sqlite.sql",)]
    finally:
        host.stop()
        assert not host.wait(60)
