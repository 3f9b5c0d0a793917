"""Post-upload processing: call a stored procedure or SQL statement at HQ once per upload session.

CDX leaves processing uploaded data to a separate HQ job; ``hq.post_upload`` makes the HQ upload
sink run it per session. Contract:

- Queued in the session's own transaction: every ``Applied`` session that inserted rows gets a
  ``Pending`` row in ``cdx.upload_post_processing`` (SQLite ``cdx_upload_post_processing``),
  keyed by the session id, committed with the rows and offsets. Nothing is lost when the sink is
  killed: pending rows left behind run on the next start (and after every batch).
- Exactly once when it succeeds: the call and its ``Done`` status (with the result: the first
  value the call returns, else the row count) commit in one HQ transaction. A call that fails or
  passes ``timeout_seconds`` is rolled back and marked ``Failed`` with the error; it is retried
  after each later batch until it has failed ``MAX_ATTEMPTS`` times (then an operator reruns it).
- The procedure gets the session id as its only argument (SQL Server ``EXEC proc ?``,
  PostgreSQL ``CALL proc(%s)``); a statement binds it at ``:session``. SQLite has no procedures.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import uuid
from collections.abc import Sequence
from typing import Any

from cdx.connectors.migrate.execute import time_limit
from cdx.connectors.upload.sessions import APPLIED, Session
from cdx.dialects import ColumnInfo, Connection, Dialect, LogicalType
from cdx.errors import ConfigError
from cdx.stage.sessions import kernel_ref, utcnow
from cdx.topology.extensions import PostUpload
from cdx.topology.identifiers import TableRef

log = logging.getLogger("cdx.upload.post")

TABLE = "cdx_upload_post_processing"
PENDING, DONE, FAILED = "Pending", "Done", "Failed"
MAX_ATTEMPTS = 3
COLUMNS = [
    ColumnInfo("session_id", LogicalType.STRING, nullable=False, length=32),
    ColumnInfo("channel", LogicalType.STRING, length=100), ColumnInfo("hq_table", LogicalType.STRING, length=260),
    ColumnInfo("status", LogicalType.STRING, nullable=False, length=10),
    ColumnInfo("attempts", LogicalType.INT32, nullable=False),
    ColumnInfo("result", LogicalType.STRING, length=2000), ColumnInfo("error", LogicalType.STRING, length=2000),
    ColumnInfo("queued_at", LogicalType.TIMESTAMP), ColumnInfo("finished_at", LogicalType.TIMESTAMP),
]


def call_sql(config: PostUpload, dialect: Dialect) -> str:
    """The SQL run per session, with one placeholder for the session id."""
    p = dialect.placeholder
    if config.statement is not None:
        return config.statement.replace(":session", p)
    assert config.procedure is not None
    ref = TableRef.parse(config.procedure)
    name = dialect.qualified(ref.schema, ref.name) if ref.schema else dialect.quote_ident(ref.name)
    if dialect.name == "sqlserver":
        return f"EXEC {name} {p}"
    if dialect.name == "postgresql":
        return f"CALL {name}({p})"
    raise ConfigError(f"hq.post_upload.procedure: {dialect.name} has no stored procedures; use 'statement'")


class PostUploadHook:
    """Queues and runs the post-upload call of ``config`` (a no-op when it is None)."""

    def __init__(self, config: PostUpload | None, dialect: Dialect) -> None:
        self.config = config
        self.dialect = dialect
        self.sql = call_sql(config, dialect) if config is not None else ""
        self.table = dialect.kernel_table(TABLE)

    def ensure(self, conn: Connection) -> None:
        """Create the queue table (caller's transaction)."""
        if self.config is None:
            return
        schema, table = kernel_ref(self.dialect, TABLE)
        self.dialect.ensure_schema(conn, schema)
        self.dialect.create_table(conn, schema, table, COLUMNS, ["session_id"])

    def queue(self, conn: Connection, sessions: Sequence[Session]) -> None:
        """Give each session an id and queue the ones that inserted rows (the session's transaction)."""
        if self.config is None:
            return
        for s in sessions:
            s.session_id = s.session_id or uuid.uuid4().hex
        rows = [[s.session_id, s.channel, s.hq_table, PENDING, 0, None, None, self.dialect.encode(utcnow()), None]
                for s in sessions if s.status == APPLIED and s.rows_inserted > 0]
        if rows:
            names = self.dialect.columns_sql([c.name for c in COLUMNS])
            conn.cursor().executemany(f"INSERT INTO {self.table} ({names}) VALUES"
                                      f" ({', '.join([self.dialect.placeholder] * len(COLUMNS))})", rows)

    def run_pending(self, conn: Connection) -> int:
        """Run every queued call not yet done (oldest first); returns how many succeeded. Never raises
        for a failing call (it is recorded); raises only when HQ cannot be read."""
        if self.config is None:
            return 0
        d, q, p = self.dialect, self.dialect.quote_ident, self.dialect.placeholder
        with d.transaction(conn):
            cur = conn.cursor()
            cur.execute(f"SELECT {q('session_id')} FROM {self.table} WHERE {q('status')} = {p}"
                        f" OR ({q('status')} = {p} AND {q('attempts')} < {p}) ORDER BY {q('queued_at')}",
                        (PENDING, FAILED, MAX_ATTEMPTS))
            ids = [str(r[0]) for r in cur.fetchall()]
        return sum(self._run_one(conn, session_id) for session_id in ids)

    def _run_one(self, conn: Connection, session_id: str) -> bool:
        assert self.config is not None
        d, fired = self.dialect, threading.Event()
        try:
            with d.transaction(conn):
                cur = conn.cursor()
                with time_limit(d, conn, cur, self.config.timeout_seconds, fired):
                    cur.execute(self.sql, (session_id,))
                    result = _result(cur)
                self._finish(cur, session_id, DONE, result, None)
            return True
        except Exception as e:
            why = f"timed out after {self.config.timeout_seconds:g} s" if fired.is_set() else \
                (str(e).strip().splitlines() or [type(e).__name__])[0]
            log.error("post-upload processing of session %s failed: %s", session_id, why)
            with d.transaction(conn):
                self._finish(conn.cursor(), session_id, FAILED, None, why[:2000])
            return False

    def _finish(self, cur: Any, session_id: str, status: str, result: str | None, error: str | None) -> None:
        """Record one more attempt of the call and its outcome (the caller's transaction)."""
        d, q, p = self.dialect, self.dialect.quote_ident, self.dialect.placeholder
        cur.execute(f"UPDATE {self.table} SET {q('status')} = {p}, {q('result')} = {p}, {q('error')} = {p},"
                    f" {q('attempts')} = {q('attempts')} + 1, {q('finished_at')} = {p} WHERE {q('session_id')} = {p}",
                    (status, result, error, d.encode(utcnow()), session_id))


def _result(cur: Any) -> str:
    """The first value the call returned, else its row count."""
    try:
        row = cur.fetchone() if cur.description else None
    except Exception:
        row = None
    if row:
        return str(row[0])[:2000]
    return f"{max(cur.rowcount or 0, 0)} rows"


def statuses(conn: Connection, dialect: Dialect) -> list[tuple[str, str, int, str | None, str | None,
                                                                dt.datetime | None]]:
    """``(session_id, status, attempts, result, error, finished_at)`` of every queued call, newest first."""
    q = dialect.quote_ident
    cur = conn.cursor()
    cur.execute(f"SELECT {q('session_id')}, {q('status')}, {q('attempts')}, {q('result')}, {q('error')},"
                f" {q('finished_at')} FROM {dialect.kernel_table(TABLE)} ORDER BY {q('queued_at')} DESC")
    return [(str(a), str(b), int(c), d, e, dialect.decode(COLUMNS[8], f)) for a, b, c, d, e, f in cur.fetchall()]
