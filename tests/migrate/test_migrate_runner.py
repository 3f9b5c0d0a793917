"""cdx channel migrate against real SQLite and PostgreSQL channel databases and an offline register:
order, once only, a failing script rerun after its fix, a changed published script refused, timeout."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest

from cdx.connectors.migrate.fleet import migrate_all, targets
from cdx.connectors.migrate.runner import Settings
from cdx.connectors.migrate.scripts import discover
from tests.migrate.helpers import topology, write

pytestmark = pytest.mark.integration

SQLITE = {
    "0001_colors.sqlite.sql": "CREATE TABLE ext_COLORS (ID INTEGER NOT NULL PRIMARY KEY,"
                              " NAME TEXT NOT NULL DEFAULT '');\n"
                              "INSERT INTO ext_COLORS (ID, NAME) VALUES (1, 'red');\n",
    "0002_more.sqlite.sql": "-- depends on 0001\nINSERT INTO ext_COLORS (ID, NAME) VALUES (2, 'blue');\n",
}
POSTGRES = {
    "0001_colors.postgresql.sql": "CREATE SCHEMA IF NOT EXISTS ext;\n"
                                  "CREATE TABLE ext.colors (id int NOT NULL PRIMARY KEY, name text NOT NULL"
                                  " DEFAULT '');\nINSERT INTO ext.colors VALUES (1, 'red');\n",
    "0002_more.postgresql.sql": "INSERT INTO ext.colors VALUES (2, 'blue');\n",
}


def _rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(sql).fetchall()


def _run(topo, directory: Path, **settings):  # type: ignore[no-untyped-def]
    return migrate_all(targets(topo), discover(directory), Settings(**settings), parallel=2)


def test_scripts_run_in_order_once_on_every_database(tmp_path: Path, postgres: str) -> None:
    topo = topology(tmp_path, postgres)
    scripts = write(tmp_path / "scripts", {**SQLITE, **POSTGRES, "README.md": "not a script",
                                           "0000_tsql_only.sql": "CREATE TABLE [ext].[X] (A int NOT NULL)"})
    assert discover(scripts).warnings == [f"{scripts / 'README.md'}: not a .sql file; ignored"]
    first = _run(topo, scripts)
    assert [(r.target.owner_id, r.count("ran"), r.ok) for r in first] == [
        ("store-1", 2, True), ("store-1-pos-1", 2, True), ("store-pg", 2, True)]
    for db in ("store-1.db", "pos-1.db"):
        assert _rows(tmp_path / db, "SELECT ID, NAME FROM ext_COLORS ORDER BY ID") == [(1, "red"), (2, "blue")]
        history = _rows(tmp_path / db, "SELECT script, duration_ms >= 0, finished_at >= started_at"
                                       " FROM cdx_extension_history ORDER BY script")
        assert history == [("0001_colors.sqlite.sql", 1, 1), ("0002_more.sqlite.sql", 1, 1)]
    with psycopg.connect(postgres) as conn:
        assert conn.execute("SELECT id FROM ext.colors ORDER BY id").fetchall() == [(1,), (2,)]
        assert conn.execute("SELECT script FROM cdx.cdx_extension_history ORDER BY script").fetchall() == [
            ("0001_colors.postgresql.sql",), ("0002_more.postgresql.sql",)]
    second = _run(topo, scripts)
    assert [(r.count("ran"), r.count("skipped")) for r in second] == [(0, 2)] * 3


def test_failed_script_records_nothing_and_reruns_after_its_fix(tmp_path: Path) -> None:
    topo = topology(tmp_path)
    scripts = write(tmp_path / "scripts", {
        "0001_ok.sqlite.sql": "CREATE TABLE ext_A (ID INTEGER NOT NULL PRIMARY KEY);\n",
        "0002_bad.sqlite.sql": "CREATE TABLE ext_B (ID INTEGER NOT NULL PRIMARY KEY);\n"
                               "INSERT INTO ext_MISSING VALUES (1);\n",
        "0003_after.sqlite.sql": "CREATE TABLE ext_C (ID INTEGER NOT NULL PRIMARY KEY);\n",
    })
    (result, *_) = _run(topo, scripts)
    assert [(o.script, o.status) for o in result.outcomes] == [
        ("0001_ok.sqlite.sql", "ran"), ("0002_bad.sqlite.sql", "failed"), ("0003_after.sqlite.sql", "pending")]
    assert "no such table: ext_MISSING" in result.outcomes[1].detail
    assert "line 2" in result.outcomes[1].detail
    tables = {r[0] for r in _rows(tmp_path / "store-1.db", "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "ext_B" not in tables and "ext_C" not in tables  # nothing half-applied
    write(scripts, {"0002_bad.sqlite.sql": "CREATE TABLE ext_B (ID INTEGER NOT NULL PRIMARY KEY);\n"})
    (result, *_) = _run(topo, scripts)
    assert [(o.script, o.status) for o in result.outcomes] == [
        ("0001_ok.sqlite.sql", "skipped"), ("0002_bad.sqlite.sql", "ran"), ("0003_after.sqlite.sql", "ran")]


def test_changed_published_script_is_refused(tmp_path: Path) -> None:
    topo = topology(tmp_path)
    scripts = write(tmp_path / "scripts", {"0001_a.sqlite.sql": "CREATE TABLE ext_A (ID INTEGER NOT NULL);\n"})
    _run(topo, scripts)
    write(scripts, {"0001_a.sqlite.sql": "CREATE TABLE ext_A (ID INTEGER NOT NULL, X TEXT NOT NULL DEFAULT '');\n",
                    "0002_b.sqlite.sql": "CREATE TABLE ext_B (ID INTEGER NOT NULL);\n"})
    (result, *_) = _run(topo, scripts)
    assert [o.status for o in result.outcomes] == ["failed", "pending"]
    assert "published scripts must not change: add a new script" in result.outcomes[0].detail
    assert not result.ok
    # Line endings converted by a checkout are not a change.
    (scripts / "0001_a.sqlite.sql").write_bytes(b"\xef\xbb\xbfCREATE TABLE ext_A (ID INTEGER NOT NULL);\r\n")
    (scripts / "0002_b.sqlite.sql").unlink()
    (result, *_) = _run(topo, scripts)
    assert [o.status for o in result.outcomes] == ["skipped"]


def test_script_over_its_timeout_fails_and_records_nothing(tmp_path: Path) -> None:
    topo = topology(tmp_path)
    slow = ("CREATE TABLE ext_SLOW (N INTEGER NOT NULL);\n"
            "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c) INSERT INTO ext_SLOW SELECT n FROM c;\n")
    scripts = write(tmp_path / "scripts", {"0001_slow.sqlite.sql": slow})
    (result, *_) = migrate_all(targets(topo, ["store-1"]), discover(scripts), Settings(timeout=0.5))
    assert result.outcomes[0].status == "failed"
    assert "timed out after 0.5 s" in result.outcomes[0].detail
    assert _rows(tmp_path / "store-1.db", "SELECT COUNT(*) FROM cdx_extension_history") == [(0,)]


def test_unreachable_database_does_not_block_the_others(tmp_path: Path) -> None:
    topo = topology(tmp_path, "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2")
    scripts = write(tmp_path / "scripts", SQLITE)
    results = _run(topo, scripts)
    assert [(r.target.owner_id, r.ok) for r in results] == [
        ("store-1", True), ("store-1-pos-1", True), ("store-pg", False)]
    assert results[2].error is not None and "cannot connect" in results[2].error


def test_dry_run_changes_nothing(tmp_path: Path) -> None:
    topo = topology(tmp_path)
    scripts = write(tmp_path / "scripts", SQLITE)
    (result, *_) = migrate_all(targets(topo, ["store-1"]), discover(scripts), Settings(dry_run=True))
    assert [o.status for o in result.outcomes] == ["pending", "pending"]
    tables = _rows(tmp_path / "store-1.db", "SELECT name FROM sqlite_master")
    assert tables == []


def test_postgresql_script_over_its_timeout_is_cancelled(tmp_path: Path, postgres: str) -> None:
    topo = topology(tmp_path, postgres)
    scripts = write(tmp_path / "scripts", {"0009_sleep.postgresql.sql": "SELECT pg_sleep(30);\n"})
    (result,) = migrate_all(targets(topo, ["store-pg"]), discover(scripts), Settings(timeout=0.5))
    assert result.outcomes[0].status == "failed" and "timed out" in result.outcomes[0].detail


def test_two_runners_on_one_database_run_a_script_once(tmp_path: Path, postgres: str) -> None:
    import threading

    from cdx.connectors.migrate.runner import migrate_database

    topo = topology(tmp_path, postgres)
    scripts = write(tmp_path / "scripts", {"0001_schema.postgresql.sql": "CREATE SCHEMA IF NOT EXISTS ext;\n"})
    (target,) = targets(topo, ["store-pg"])
    migrate_database(target, discover(scripts).scripts, Settings())
    write(scripts, {"0002_once.postgresql.sql": "CREATE TABLE IF NOT EXISTS ext.once (n int NOT NULL DEFAULT 0);\n"
                                               "INSERT INTO ext.once VALUES (1);\nSELECT pg_sleep(0.5);\n"})
    found = discover(scripts).scripts
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(
        migrate_database(target, found, Settings()).outcomes[1].status)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(results) == ["ran", "skipped"]
    with psycopg.connect(postgres) as conn:
        assert conn.execute("SELECT COUNT(*) FROM ext.once").fetchone() == (1,)


def test_documented_example_directory_passes_the_rules_and_runs(tmp_path: Path, postgres: str) -> None:
    from cdx.connectors.migrate.checks import ExtensionRules
    from cdx.dialects import get_dialect

    examples = Path(__file__).parents[2] / "docs" / "examples" / "extensions"
    topo = topology(tmp_path, postgres)
    found = discover(examples)
    assert found.warnings == [] and len(found.scripts) == 6
    rules = ExtensionRules(topo)
    for script in found.for_dialect("sqlserver"):
        assert rules.violations(script, None, get_dialect("sqlserver")) == []
    results = migrate_all(targets(topo), found, Settings(rules=rules))
    assert [(r.target.owner_id, r.count("ran"), r.ok) for r in results] == [
        ("store-1", 2, True), ("store-1-pos-1", 2, True), ("store-pg", 2, True)], [r.outcomes for r in results]
