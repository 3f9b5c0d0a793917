"""cdx channel migrate on a real SQL Server (``make test-sqlserver``, ``CDX_TEST_SQLSERVER_DSN``):
T-SQL batches split on GO, the documented extension script, history, grants, a refused script."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from cdx.connectors.migrate.checks import ExtensionRules
from cdx.connectors.migrate.fleet import migrate_all, targets
from cdx.connectors.migrate.runner import Settings
from cdx.connectors.migrate.scripts import discover
from cdx.topology.loader import validate_topology
from cdx.topology.root import Topology
from tests.migrate.helpers import write
from tests.migrate.test_migrate_rules import DOC_STORE_HOURS

pytestmark = pytest.mark.sqlserver


def _topology(tmp: Path, dsn: str, **extensions: Any) -> Topology:
    return validate_topology({
        "kafka": {"bootstrap_servers": "127.0.0.1:1"}, "hq": {"dsn": f"sqlite:///{tmp / 'hq.db'}"},
        "channel_data_groups": [{"id": "g", "legal_entities": ["usrt"], "channels": [
            {"id": "store-mssql", "database": {"dialect": "sqlserver", "dsn": dsn}}]}],
        "extensions": extensions})


def test_documented_script_runs_once_with_grants(tmp_path: Path) -> None:
    import pyodbc

    dsn = os.environ.get("CDX_TEST_SQLSERVER_DSN", "")
    if not dsn:
        pytest.skip("set CDX_TEST_SQLSERVER_DSN")
    role = f"cdx_users_{uuid.uuid4().hex[:6]}"
    with pyodbc.connect(dsn, autocommit=True) as conn:
        conn.execute("IF SCHEMA_ID(N'ext') IS NULL EXEC(N'CREATE SCHEMA [ext]')")
        conn.execute("DROP VIEW IF EXISTS [ext].[CONTOSORETAILSTOREHOURSVIEW]")
        conn.execute("DROP TABLE IF EXISTS [ext].[CONTOSORETAILSTOREHOURSTABLE]")
        conn.execute("IF SCHEMA_ID(N'ax') IS NULL EXEC(N'CREATE SCHEMA [ax]')")
        conn.execute("IF OBJECT_ID(N'[ax].[RETAILSTORETABLE]') IS NULL CREATE TABLE [ax].[RETAILSTORETABLE]"
                     " (RECID bigint NOT NULL PRIMARY KEY, STORENUMBER nvarchar(10) NOT NULL)")
        conn.execute(f"CREATE ROLE [{role}]")
        conn.execute("IF OBJECT_ID(N'[cdx].[cdx_extension_history]') IS NOT NULL"
                     " DELETE FROM [cdx].[cdx_extension_history]")
    topo = _topology(tmp_path, dsn, roles={"users": role})
    scripts = write(tmp_path / "scripts", {"0001_store_hours.sql": DOC_STORE_HOURS})
    settings = Settings(rules=ExtensionRules(topo))
    (first,) = migrate_all(targets(topo), discover(scripts), settings)
    assert [o.status for o in first.outcomes] == ["ran"], first.outcomes
    (again,) = migrate_all(targets(topo), discover(scripts), settings)
    assert [o.status for o in again.outcomes] == ["skipped"]
    with pyodbc.connect(dsn) as conn:
        granted = conn.execute(
            "SELECT COUNT(*) FROM sys.database_permissions AS p JOIN sys.database_principals AS r"
            " ON r.principal_id = p.grantee_principal_id WHERE r.name = ?"
            " AND p.major_id = OBJECT_ID(N'[ext].[CONTOSORETAILSTOREHOURSTABLE]')", role).fetchone()
        assert granted is not None and granted[0] == 4  # SELECT, INSERT, UPDATE, DELETE
