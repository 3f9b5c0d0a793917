"""Post-upload processing on a real SQLite HQ: queued with the session, run once, failures recorded and
retried a bounded number of times, a timeout cancels the call."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from cdx.connectors.upload.post_processing import MAX_ATTEMPTS, PostUploadHook, call_sql, statuses
from cdx.connectors.upload.sessions import Session
from cdx.dialects import get_dialect
from cdx.errors import ConfigError
from cdx.topology.extensions import PostUpload

D = get_dialect("sqlite")


def _sessions() -> list[Session]:
    return [Session("s01", "P-0001", "RetailTransactionTable", "dbo.T", "t", 0, 1, 5, rows_inserted=5),
            Session("s02", "P-0001", "RetailTransactionTable", "dbo.T", "t", 1, 1, 5, rows_inserted=0)]


def _hook(path: Path, statement: str, timeout: float = 600) -> tuple[PostUploadHook, sqlite3.Connection]:
    conn = D.connect(str(path))
    with D.transaction(conn):
        conn.execute("CREATE TABLE IF NOT EXISTS processed (session_id TEXT NOT NULL)")
    hook = PostUploadHook(PostUpload(statement=statement, timeout_seconds=timeout), D)
    with D.transaction(conn):
        hook.ensure(conn)
        hook.queue(conn, _sessions())
    return hook, conn


def test_each_session_that_inserted_rows_is_processed_once(tmp_path: Path) -> None:
    hook, conn = _hook(tmp_path / "hq.db", "INSERT INTO processed (session_id) VALUES (:session)")
    assert hook.run_pending(conn) == 1
    assert hook.run_pending(conn) == 0
    ((session_id,),) = conn.execute("SELECT session_id FROM processed").fetchall()
    [(sid, status, attempts, result, error, finished)] = statuses(conn, D)
    assert (sid, status, attempts, result, error) == (session_id, "Done", 1, "1 rows", None)
    assert finished is not None


def test_failing_call_is_recorded_and_retried_a_bounded_number_of_times(tmp_path: Path) -> None:
    hook, conn = _hook(tmp_path / "hq.db", "INSERT INTO missing_table (session_id) VALUES (:session)")
    for _ in range(MAX_ATTEMPTS + 2):
        assert hook.run_pending(conn) == 0
    [(_, status, attempts, _, error, _)] = statuses(conn, D)
    assert (status, attempts) == ("Failed", MAX_ATTEMPTS)
    assert error is not None and "no such table: missing_table" in error


def test_call_over_its_timeout_is_cancelled(tmp_path: Path) -> None:
    slow = ("WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c)"
            " SELECT COUNT(*) FROM c WHERE :session IS NOT NULL")
    hook, conn = _hook(tmp_path / "hq.db", slow, timeout=0.5)
    assert hook.run_pending(conn) == 0
    [(_, status, _, _, error, _)] = statuses(conn, D)
    assert status == "Failed" and error == "timed out after 0.5 s"


def test_call_sql_per_dialect() -> None:
    proc = PostUpload(procedure="ext.PROCESSUPLOAD")
    assert call_sql(proc, get_dialect("sqlserver")) == "EXEC [ext].[PROCESSUPLOAD] ?"
    assert call_sql(proc, get_dialect("postgresql")) == 'CALL "ext"."PROCESSUPLOAD"(%s)'
    with pytest.raises(ConfigError, match="sqlite has no stored procedures"):
        call_sql(proc, D)
    with pytest.raises(ValueError, match="exactly one of"):
        PostUpload(procedure="ext.P", statement="SELECT :session")
    with pytest.raises(ValueError, match=":session exactly once"):
        PostUpload(statement="SELECT 1")
