"""Upload sessions: the HQ history of applied upload batches (CDX's upload sessions).

One row per (channel, subjob) of each batch the HQ upload sink applies, written in the same HQ
transaction as the rows it counts (status ``Applied``), or after a failed attempt (status
``Failed``, with the error; the batch is then retried). Table ``cdx.upload_sessions``
(SQLite: ``cdx_upload_sessions``), created by the sink.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from cdx.dialects import Connection, Dialect
from cdx.stage.sessions import insert_rows, int_columns, text_column, time_columns, utcnow

SCHEMA = "cdx"
TABLE = "upload_sessions"
APPLIED = "Applied"
FAILED = "Failed"

COLUMNS = (
    text_column("session_id", 32, nullable=False), text_column("channel", 100), text_column("job", 100),
    text_column("subjob", 100), text_column("hq_table", 260), text_column("topic", 249),
    *int_columns("partition", "first_offset", "last_offset", "first_counter", "last_counter", "rows_received",
                 "rows_inserted", "rows_duplicate", "rows_dead_lettered"),
    text_column("status", 10), *time_columns("started_at", "finished_at"), text_column("error", 2000),
)


@dataclass
class Session:
    channel: str
    job: str
    subjob: str
    hq_table: str
    topic: str
    partition: int
    first_offset: int
    last_offset: int
    first_counter: int | None = None
    last_counter: int | None = None
    rows_received: int = 0
    rows_inserted: int = 0
    rows_duplicate: int = 0
    rows_dead_lettered: int = 0
    status: str = APPLIED
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    error: str | None = None
    session_id: str = ""

    def row(self) -> list[Any]:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values["session_id"] = self.session_id or uuid.uuid4().hex
        if values["error"]:
            values["error"] = str(values["error"])[:2000]
        return [values[c.name] for c in COLUMNS]


def ensure_sessions_table(conn: Connection, dialect: Dialect) -> None:
    """Create the sessions table if missing (caller's transaction)."""
    dialect.ensure_schema(conn, dialect.physical_table(SCHEMA, TABLE)[0])
    dialect.create_table(conn, SCHEMA, TABLE, COLUMNS, ["session_id"])


def insert_sessions(conn: Connection, dialect: Dialect, sessions: Sequence[Session]) -> None:
    """Insert session rows in the caller's transaction."""
    insert_rows(conn, dialect, dialect.qualified(SCHEMA, TABLE), [c.name for c in COLUMNS], [s.row() for s in sessions])


@dataclass
class ChannelSummary:
    channel: str
    sessions: int
    failed: int
    rows_inserted: int
    rows_duplicate: int
    rows_dead_lettered: int
    last_finished: dt.datetime | None
    last_status: str | None
    last_error: str | None


def summary(conn: Connection, dialect: Dialect) -> list[ChannelSummary]:
    """Per channel: session and row totals, and the latest session's time, status and error.
    Empty when the sessions table does not exist. Runs in (and ends) its own transaction."""
    q = dialect.quote_ident
    table = dialect.qualified(SCHEMA, TABLE)
    try:
        if not dialect.table_exists(conn, SCHEMA, TABLE):
            return []
        cur = conn.cursor()
        cur.execute(
            f"SELECT {q('channel')}, COUNT(*), SUM(CASE WHEN {q('status')} = {dialect.placeholder} THEN 1 ELSE 0 END),"
            f" SUM({q('rows_inserted')}), SUM({q('rows_duplicate')}), SUM({q('rows_dead_lettered')}),"
            f" MAX({q('finished_at')}) FROM {table} GROUP BY {q('channel')} ORDER BY {q('channel')}", (FAILED,))
        out = []
        for channel, n, failed, ins, dup, dead, last in cur.fetchall():  # all fetched before the loop reuses cur
            cur.execute(f"SELECT {q('status')}, {q('error')} FROM {table} WHERE {q('channel')} = {dialect.placeholder}"
                        f" ORDER BY {q('finished_at')} DESC", (channel,))  # no LIMIT: SQL Server has none
            status, error = cur.fetchone() or (None, None)
            out.append(ChannelSummary(str(channel), int(n), int(failed or 0), int(ins or 0), int(dup or 0),
                                      int(dead or 0), dialect.decode(COLUMNS[-2], last), status, error))
        return out
    finally:
        conn.rollback()


def recent(conn: Connection, dialect: Dialect, limit: int = 20, channel: str | None = None) -> list[Session]:
    """The latest sessions, newest first (all channels, or one)."""
    q = dialect.quote_ident
    names = [c.name for c in COLUMNS]
    where = f" WHERE {q('channel')} = {dialect.placeholder}" if channel else ""
    try:
        if not dialect.table_exists(conn, SCHEMA, TABLE):
            return []
        cur = conn.cursor()
        cur.execute(f"SELECT {dialect.columns_sql(names)} FROM {dialect.qualified(SCHEMA, TABLE)}{where}"
                    f" ORDER BY {q('finished_at')} DESC", (channel,) if channel else ())
        rows = cur.fetchmany(max(0, limit))  # not LIMIT: portable to SQL Server
    finally:
        conn.rollback()
    return [Session(**{c.name: dialect.decode(c, v) for c, v in zip(COLUMNS, raw, strict=True)}) for raw in rows]


def prune_sessions(conn: Connection, dialect: Dialect, retention_days: float, max_rows: int) -> int:
    """Delete upload sessions older than ``retention_days`` (0: keep by count only), then keep at most
    ``max_rows`` per channel (0: no limit), oldest first. Caller's transaction; returns the rows deleted.
    Idempotent: a second run deletes nothing."""
    q, p = dialect.quote_ident, dialect.placeholder
    table = dialect.qualified(SCHEMA, TABLE)
    cur = conn.cursor()
    deleted = 0
    if retention_days > 0:
        cutoff = utcnow() - dt.timedelta(days=retention_days)
        cur.execute(f"DELETE FROM {table} WHERE {q('finished_at')} < {p}", (dialect.encode(cutoff),))
        deleted += max(cur.rowcount or 0, 0)
    if max_rows > 0:
        cur.execute(f"SELECT {q('channel')}, COUNT(*) FROM {table} GROUP BY {q('channel')}"
                    f" HAVING COUNT(*) > {p}", (max_rows,))
        for channel, count in cur.fetchall():
            excess = int(count) - max_rows
            cur.execute(f"SELECT {q('session_id')} FROM {table} WHERE {q('channel')} = {p}"
                        f" ORDER BY {q('finished_at')}, {q('session_id')}", (channel,))
            ids = [(r[0],) for r in cur.fetchmany(excess)]  # not LIMIT: portable to SQL Server
            cur.executemany(f"DELETE FROM {table} WHERE {q('session_id')} = {p}", ids)
            deleted += len(ids)
    return deleted
