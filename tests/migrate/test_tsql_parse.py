"""Every statement cdx generates for SQL Server parses with sqlglot's T-SQL dialect.

No SQL Server runs here: a recording connection captures the SQL of the dialect (DDL, bulk MERGE
and staging, state), change tracking, the download- and upload-session history tables, the
extension history and grants, and post-upload calls; each statement is then parsed. sqlglot keeps
a few statements it does not model as opaque commands: those are listed in ``OPAQUE`` on purpose,
anything else must parse into a real syntax tree. ``make test-sqlserver`` runs the same code
against a real server (``CDX_TEST_SQLSERVER_DSN``)."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from sqlglot import exp

from cdx.connectors.capture.tracking.sqlserver import SQLServerChangeTracker
from cdx.connectors.migrate import history
from cdx.connectors.migrate.grants import grant_statements
from cdx.connectors.migrate.scripts import Script, checksum
from cdx.connectors.migrate.sqlparse import glot
from cdx.connectors.sink import sessions as download_sessions
from cdx.connectors.upload import sessions as upload_sessions
from cdx.dialects import ColumnInfo, LogicalType, get_dialect
from tests.migrate.helpers import topology
from tests.migrate.tsql_recorder import RecordingConnection, catalog

D = get_dialect("sqlserver")
OPAQUE = ("ALTER DATABASE CURRENT SET ", "EXEC sys.sp_flush_CT_internal_table_on_demand @TableToClean = ?",
          "SET TRANSACTION ISOLATION LEVEL ")
"""Fixed statements (no generated part) that sqlglot's T-SQL dialect does not model; not parsed."""
COLUMNS = [ColumnInfo("ITEMID", LogicalType.STRING, nullable=False, primary_key=True, length=20, key_position=1),
           ColumnInfo("PRICE", LogicalType.DECIMAL, precision=32, scale=6),
           ColumnInfo("MODIFIED", LogicalType.TIMESTAMP), ColumnInfo("PHOTO", LogicalType.BYTES),
           ColumnInfo("ACTIVE", LogicalType.BOOL, default="0", nullable=False)]
CATALOG = [("ITEMID", "nvarchar", 40, 1), ("PRICE", "decimal", 17, 0), ("MODIFIED", "datetime2", 8, 0)]


def parse_all(text: str, dialect: str) -> list[exp.Expression]:
    """Every statement of ``text`` (raises ``ParseError``)."""
    return [s for s in glot(dialect).parse(text) if s is not None]


def for_sqlglot(sql: str) -> str:
    """Work around sqlglot's T-SQL gaps, keeping everything else: ``CHANGETABLE(CHANGES t, v)`` is read as
    the table function ``CHANGETABLE(t, v)``."""
    return re.sub(r"CHANGETABLE\(CHANGES ", "CHANGETABLE(", sql)


def assert_parses(statements: list[str]) -> None:
    assert statements, "nothing was generated"
    for sql in statements:
        if sql.lstrip().startswith(OPAQUE):
            continue
        trees = parse_all(for_sqlglot(sql), "sqlserver")
        assert trees, sql
        for tree in trees:
            assert not isinstance(tree, exp.Command), f"sqlglot could not model: {sql}"


def test_dialect_ddl_state_and_bulk_statements() -> None:
    conn = RecordingConnection(catalog(CATALOG))
    D.ensure_schema(conn, "ext")
    D.create_table(conn, "ext", "CONTOSOITEM", COLUMNS, ["ITEMID"])
    D.add_column(conn, "ext", "CONTOSOITEM", ColumnInfo("WEIGHT", LogicalType.FLOAT64, nullable=False, default="0"))
    D.ensure_state_table(conn)
    D.read_state(conn, "ns")
    D.write_state(conn, "ns", {"k": "v"})
    rows = [("A", 1, dt.datetime(2026, 1, 1), b"x", True)]
    names = [c.name for c in COLUMNS]
    D.upsert_rows(conn, "ax", "INVENTTABLE", names, ["ITEMID"], rows)
    D.insert_ignore_existing(conn, "ax", "INVENTTABLE", names, ["ITEMID"], rows)
    D.delete_rows(conn, "ax", "INVENTTABLE", ["ITEMID"], [("A",)])
    D.introspect_columns(conn, "ax", "INVENTTABLE")
    assert_parses(conn.statements)
    assert any(s.startswith("MERGE INTO [ax].[INVENTTABLE] WITH (HOLDLOCK)") for s in conn.statements)
    assert any("[WEIGHT] float NOT NULL DEFAULT 0" in s for s in conn.statements)


def test_change_tracking_statements() -> None:
    conn = RecordingConnection(catalog(CATALOG))
    tracker = SQLServerChangeTracker(conn)
    tracker.enable(["dbo.INVENTTABLE"], dt.timedelta(days=3))
    tracker.disable(["dbo.INVENTTABLE"])
    tracker.current_version()
    tracker.min_valid_version("dbo.INVENTTABLE")
    tracker.changes("dbo.INVENTTABLE", 5, limit=100)
    tracker.snapshot_chunk("dbo.INVENTTABLE", ["A"], 100)
    tracker.cleanup(dt.timedelta(days=2))
    assert_parses(conn.statements)
    assert any("CHANGETABLE(CHANGES [dbo].[INVENTTABLE], @since)" in s for s in conn.statements)


def test_history_tables_statements() -> None:
    conn = RecordingConnection(catalog(CATALOG))
    download_sessions.ensure_table(conn, D)
    log = download_sessions.SessionLog(D, "store-1", retention_days=1, max_rows=10)
    log.prune(conn)
    download_sessions.recent(conn, D, "store-1", 5)
    upload_sessions.ensure_sessions_table(conn, D)
    upload_sessions.insert_sessions(conn, D, [upload_sessions.Session("c", "j", "s", "t", "topic", 0, 1, 2)])
    upload_sessions.recent(conn, D, 5)
    history.ensure(conn, D)
    history.recorded(conn, D)
    now = dt.datetime(2026, 1, 1)
    history.record(conn, D, history.Entry("0001_a.sql", "0" * 64, now, now))
    history.lock_and_read(conn, D, "0001_a.sql")
    assert_parses(conn.statements)


def test_extension_grants_and_migrate_statements(tmp_path: Path) -> None:
    topo = topology(tmp_path, roles={"users": "UsersRole", "deploy": "DeployExtensibilityRole",
                                     "publishers": "PublishersRole", "data_sync": "DataSyncUsersRole"})
    text = ("CREATE TABLE [ext].[CONTOSOINVENTTABLE] (ITEMID nvarchar(20) NOT NULL PRIMARY KEY,"
            " CONTOSOCOLOR int NOT NULL DEFAULT 0)\nGO\nCREATE VIEW [ext].[V] AS SELECT 1 AS A\nGO\n"
            "CREATE PROCEDURE [ext].[P] AS BEGIN SELECT 1 END\nGO\n")
    script = Script(Path("0001.sql"), "0001.sql", "sqlserver", text, checksum(text))
    grants = grant_statements(topo, script, D)
    assert "GRANT SELECT, INSERT, UPDATE, DELETE, ALTER ON [ext].[CONTOSOINVENTTABLE] TO [DataSyncUsersRole]" in grants
    assert "GRANT EXECUTE ON [ext].[P] TO [PublishersRole]" in grants
    assert len(grants) == 8
    assert_parses(grants)
    assert_parses([b.text for b in script.batches()])


@pytest.mark.parametrize("statement", [
    "SELECT 1 FROM x WHERE",
    "MERGE INTO [a] AS t USING (SELECT 1) AS s ON WHEN MATCHED",
])
def test_the_suite_catches_syntax_errors(statement: str) -> None:
    with pytest.raises(Exception):  # noqa: B017 - sqlglot raises ParseError
        parse_all(statement, "sqlserver")


def test_demo_retail_schema_statements() -> None:
    from cdx.demo import retail_schema
    from cdx.topology import load_topology

    topo = load_topology(Path(__file__).parents[2] / "topology.yaml")
    conn = RecordingConnection()
    retail_schema.create_hq_tables(conn, D, topo)
    retail_schema.create_channel_upload_tables(conn, D, topo)
    table = retail_schema.CHANNEL_UPLOAD_TABLES["CONTOSORETAILTRANSACTIONTABLE"]
    conn.statements.append(retail_schema.insert_sql(D, "ext", table, [c.name for c in table.columns][:3]))
    assert_parses(conn.statements)


def test_post_upload_statements() -> None:
    from cdx.connectors.upload.post_processing import PostUploadHook
    from cdx.topology.extensions import PostUpload

    hook = PostUploadHook(PostUpload(procedure="ext.PROCESSUPLOAD"), D)
    conn = RecordingConnection(lambda sql: [("0123456789abcdef0123456789abcdef",)] if "SELECT" in sql else [])
    hook.ensure(conn)
    hook.queue(conn, [upload_sessions.Session("c", "j", "s", "t", "topic", 0, 1, 2, rows_inserted=2)])
    hook.run_pending(conn)
    assert "EXEC [ext].[PROCESSUPLOAD] ?" in conn.statements
    assert_parses(conn.statements)


def test_upload_source_statements(tmp_path: Path) -> None:
    from cdx.connectors.upload.source import UploadSource

    topo = topology(tmp_path)
    subjob = topo.subjob("RetailTransactionTable")
    assert subjob is not None
    cols = [("TRANSACTIONID", "nvarchar", 88, 1), ("STORE", "nvarchar", 20, 2),
            ("REPLICATIONCOUNTERFROMORIGIN", "bigint", 8, 0), ("CONTOSOSEAT", "int", 4, 0),
            ("DATAAREAID", "nvarchar", 8, 3)]
    conn = RecordingConnection(catalog(cols))
    source = UploadSource(D, conn, subjob)
    source.read_tail(conn, 10, 500)
    source.read_ranges(conn, [(1, 3), (7, 9)], 500)
    selects = [s for s in conn.statements if "LEFT JOIN [ext].[CONTOSOTRANSACTIONTABLE]" in s]
    assert len(selects) == 2 and all("OFFSET 0 ROWS FETCH NEXT" in s for s in selects)
    assert_parses(conn.statements)


def test_sink_maintenance_statements() -> None:
    from cdx.connectors.sink.dlq_replay import lock_offsets
    from cdx.connectors.sink.state import StateStore

    conn = RecordingConnection(catalog(CATALOG))
    store = StateStore(D, "cdx.group.g1")
    store.ensure(conn)
    store.load(conn)
    lock_offsets(conn, D, store)
    assert_parses(conn.statements)
