"""Rules and grants as cdx channel migrate applies them on real databases."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import psycopg
import pytest

from cdx.connectors.migrate.checks import ExtensionRules
from cdx.connectors.migrate.fleet import migrate_all, targets
from cdx.connectors.migrate.runner import Settings
from cdx.connectors.migrate.scripts import discover
from tests.migrate.helpers import topology, write

pytestmark = pytest.mark.integration


def test_refused_script_does_not_run_and_names_file_line_and_rule(tmp_path: Path) -> None:
    topo = topology(tmp_path)
    scripts = write(tmp_path / "scripts", {
        "0001_ok.sqlite.sql": "CREATE TABLE ext_A (ID INTEGER NOT NULL PRIMARY KEY);\n",
        "0002_bad.sqlite.sql": "-- reads cdx's own state\n\nCREATE VIEW ext_V AS SELECT * FROM cdx_state;\n",
    })
    (result,) = migrate_all(targets(topo, ["store-1"]), discover(scripts), Settings(rules=ExtensionRules(topo)))
    assert [o.status for o in result.outcomes] == ["ran", "refused"]
    assert f"{scripts / '0002_bad.sqlite.sql'}:3: protected-schema: cdx_state" in result.outcomes[1].detail
    with sqlite3.connect(tmp_path / "store-1.db") as conn:
        assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'ext_V'").fetchall() == []


def test_parent_key_is_read_from_the_database(tmp_path: Path) -> None:
    topo = topology(tmp_path)
    with sqlite3.connect(tmp_path / "store-1.db") as conn:
        conn.execute("CREATE TABLE ax_INVENTTABLE (ITEMID TEXT NOT NULL, DATAAREAID TEXT NOT NULL, NAME TEXT,"
                     " PRIMARY KEY (ITEMID, DATAAREAID))")
    ext = "CREATE TABLE ext_CONTOSOINVENTTABLE (ITEMID TEXT NOT NULL, {more}CONTOSOCOLOR INT NOT NULL DEFAULT 0," \
          " PRIMARY KEY (ITEMID{key}));\n"
    scripts = write(tmp_path / "scripts", {"0001_ext.sqlite.sql": ext.format(more="", key="")})
    settings = Settings(rules=ExtensionRules(topo))
    (result,) = migrate_all(targets(topo, ["store-1"]), discover(scripts), settings)
    assert result.outcomes[0].status == "refused"
    assert "parent-key" in result.outcomes[0].detail and "(ITEMID, DATAAREAID)" in result.outcomes[0].detail
    write(scripts, {"0001_ext.sqlite.sql": ext.format(more="DATAAREAID TEXT NOT NULL, ", key=", DATAAREAID")})
    (result,) = migrate_all(targets(topo, ["store-1"]), discover(scripts), settings)
    assert result.outcomes[0].status == "ran"


def test_grants_for_the_roles_named_in_the_topology_on_postgresql(tmp_path: Path, postgres: str) -> None:
    suffix = uuid.uuid4().hex[:6]
    users, sync = f"users_{suffix}", f"datasync_{suffix}"
    with psycopg.connect(postgres, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {users}")
        conn.execute(f"CREATE ROLE {sync}")
    topo = topology(tmp_path, postgres, roles={"users": users, "data_sync": sync})
    scripts = write(tmp_path / "scripts", {"0001_ext.postgresql.sql": (
        "CREATE SCHEMA IF NOT EXISTS ext;\n"
        "CREATE TABLE ext.ContosoInventTable (itemid text NOT NULL PRIMARY KEY, contosocolor int NOT NULL DEFAULT 0);\n"
        "CREATE TABLE ext.notes (id int NOT NULL PRIMARY KEY, body text NOT NULL DEFAULT '');\n")})
    dry_run = Settings(dry_run=True, rules=ExtensionRules(topo))
    dry = migrate_all(targets(topo, ["store-pg"]), discover(scripts), dry_run)
    grants = dry[0].outcomes[0].grants
    assert f'GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON TABLE "ext"."contosoinventtable" TO "{sync}"' in grants
    assert not any(sync in g and "notes" in g for g in grants)  # not replicated: no DataSync grant
    (result,) = migrate_all(targets(topo, ["store-pg"]), discover(scripts), Settings(rules=ExtensionRules(topo)))
    assert result.outcomes[0].status == "ran", result.outcomes[0].detail
    with psycopg.connect(postgres) as conn:
        check = "SELECT has_table_privilege(%s, %s, %s)"
        assert conn.execute(check, (users, "ext.notes", "DELETE")).fetchone() == (True,)
        assert conn.execute(check, (sync, "ext.contosoinventtable", "TRUNCATE")).fetchone() == (True,)
        assert conn.execute(check, (sync, "ext.notes", "SELECT")).fetchone() == (False,)
