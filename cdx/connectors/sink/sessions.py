"""Download sessions: the history of what a sink did to its channel database (CDX's download sessions).

One row per unit of work in the table ``cdx_download_sessions`` of the channel (or offline-register)
database, named like the state table (``Dialect.kernel_table``: ``cdx.cdx_download_sessions`` in
PostgreSQL and SQL Server, ``cdx_download_sessions`` in SQLite):

=================  ==============================================================================
column             meaning
=================  ==============================================================================
session_id         sortable id: 20-digit nanosecond time + 8 hex digits (newest sorts last)
channel            the channel or offline-register id (several may share a database)
kind               ``batch`` (a sink batch), ``resync`` (missed-delete resync), ``rewind``
                   (``cdx replay``), ``dlq-replay`` (``cdx dlq replay``)
group_topic        the group topic read
jobs, tables       comma-separated job ids and ``schema.table`` names the batch touched
records            group-topic records in the batch (tombstones and re-sends included)
rows_upserted      rows written: **inserted or updated** (the dialects' bulk upserts,
                   ``INSERT ... ON CONFLICT`` / ``MERGE``, do not tell which)
rows_deleted       rows actually removed (the database's count; deleting a missing key is 0)
rows_filtered      upserts turned into deletes by the channel's row filter
duplicates         router re-sends skipped (source offset covered by the watermark)
dead_lettered      records sent to the dead-letter topic
offsets            JSON ``{"<partition>": [first, last], ...}``: group-topic offsets covered
last_source_ts     newest HQ capture time (``source.ts_ms``) among the batch's changes, UTC
status             ``Applied`` or ``Failed``
started_at,        UTC
finished_at
error              why a ``Failed`` session failed (first 2,000 characters)
detail             what a ``resync``/``rewind`` session did and why
=================  ==============================================================================

An ``Applied`` session is written **in the same transaction** as the rows and offsets it
describes, so the history never claims a batch the database does not hold. A ``Failed`` session
(a batch refused by the database and then isolated record by record, a batch dropped because the
database or the dead-letter topic failed, a fatal error) is written in its own transaction, best
effort, once the database answers.

Retention is bounded: sessions older than ``retention_days`` are deleted, and at most ``max_rows``
are kept per channel (checked when a sink opens the database and every ``prune_every`` batches).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from cdx.dialects import Connection, Dialect
from cdx.stage.sessions import insert_rows, int_columns, kernel_ref, text_column, time_columns, utcnow

log = logging.getLogger("cdx.sink")

TABLE = "cdx_download_sessions"
APPLIED = "Applied"
FAILED = "Failed"
BATCH, RESYNC, REWIND, DLQ_REPLAY = "batch", "resync", "rewind", "dlq-replay"
ERROR_LIMIT = 2000

COLUMNS = (
    text_column("session_id", 40, nullable=False), text_column("channel", 128), text_column("kind", 16),
    text_column("group_topic", 249), text_column("jobs"), text_column("tables"),
    *int_columns("records", "rows_upserted", "rows_deleted", "rows_filtered", "duplicates", "dead_lettered"),
    text_column("offsets"), *time_columns("last_source_ts"), text_column("status", 10),
    *time_columns("started_at", "finished_at"), text_column("error"), text_column("detail"),
)
NAMES = tuple(c.name for c in COLUMNS)
BY_NAME = {c.name: c for c in COLUMNS}


def new_session_id() -> str:
    """Sortable and unique: nanoseconds since the epoch (20 digits) + 8 random hex digits."""
    return f"{time.time_ns():020d}{secrets.token_hex(4)}"


@dataclass
class Session:
    channel: str
    kind: str = BATCH
    group_topic: str = ""
    jobs: str = ""
    tables: str = ""
    records: int = 0
    rows_upserted: int = 0
    rows_deleted: int = 0
    rows_filtered: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    offsets: dict[int, tuple[int, int]] = field(default_factory=dict)
    """Group partition -> (first, last) offset covered."""
    last_source_ts: dt.datetime | None = None
    status: str = APPLIED
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    error: str | None = None
    detail: str | None = None
    session_id: str = field(default_factory=new_session_id)

    def row(self) -> list[Any]:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values["session_id"] = self.session_id = self.session_id or new_session_id()
        values["offsets"] = json.dumps({str(p): list(r) for p, r in sorted(self.offsets.items())})
        values["error"] = self.error[:ERROR_LIMIT] if self.error else None
        values["detail"] = self.detail[:ERROR_LIMIT] if self.detail else None
        values["finished_at"] = self.finished_at = self.finished_at or utcnow()
        return [values[n] for n in NAMES]

    @classmethod
    def from_row(cls, values: Mapping[str, Any]) -> Session:
        data = dict(values)
        try:
            data["offsets"] = {int(p): (int(r[0]), int(r[1])) for p, r in json.loads(data.get("offsets") or "{}")
                               .items()}
        except (ValueError, TypeError, IndexError):
            data["offsets"] = {}
        for n in ("records", "rows_upserted", "rows_deleted", "rows_filtered", "duplicates", "dead_lettered"):
            data[n] = int(data.get(n) or 0)
        for n in ("jobs", "tables", "group_topic", "kind", "status"):
            data[n] = str(data.get(n) or "")
        return cls(**data)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        out["offsets"] = {str(p): list(r) for p, r in sorted(self.offsets.items())}
        for k in ("last_source_ts", "started_at", "finished_at"):
            out[k] = out[k].replace(tzinfo=dt.UTC).isoformat() if out[k] is not None else None
        return out


class SessionLog:
    """Writes one database's download sessions (see module docstring)."""

    def __init__(self, dialect: Dialect, owner_id: str, *, retention_days: float = 14.0, max_rows: int = 50_000,
                 prune_every: int = 1000) -> None:
        self.dialect = dialect
        self.owner_id = owner_id
        self.retention_days = retention_days
        self.max_rows = max_rows
        self.prune_every = max(1, prune_every)
        self.ref = kernel_ref(dialect, TABLE)
        self.table = dialect.kernel_table(TABLE)
        self._since_prune = 0

    def ensure(self, conn: Connection) -> None:
        """Create the table if missing and prune it (caller's transaction)."""
        ensure_table(conn, self.dialect)
        self.prune(conn)

    def record(self, conn: Connection, session: Session) -> None:
        """Insert ``session`` in the caller's transaction (pruning now and then)."""
        insert(conn, self.dialect, [session])
        self._since_prune += 1
        if self._since_prune >= self.prune_every:
            self.prune(conn)

    def record_alone(self, conn: Connection | None, session: Session) -> bool:
        """Insert ``session`` in its own transaction; never raises (logs). True if written."""
        if conn is None:
            return False
        try:
            with self.dialect.transaction(conn):
                insert(conn, self.dialect, [session])
            return True
        except Exception as e:
            log.warning("sink %s: could not record a %s session: %s", self.owner_id, session.status, e)
            return False

    def prune(self, conn: Connection) -> int:
        """Delete sessions beyond the retention (age, then count). Returns the rows deleted."""
        self._since_prune = 0
        d, q, p = self.dialect, self.dialect.quote_ident, self.dialect.placeholder
        deleted = 0
        cur = conn.cursor()
        if self.retention_days > 0:
            cutoff = utcnow() - dt.timedelta(days=self.retention_days)
            cur.execute(f"DELETE FROM {self.table} WHERE {q('channel')} = {p} AND {q('finished_at')} < {p}",
                        (self.owner_id, d.encode(cutoff)))
            deleted += max(cur.rowcount or 0, 0)
        if self.max_rows > 0:
            cur.execute(f"SELECT COUNT(*) FROM {self.table} WHERE {q('channel')} = {p}", (self.owner_id,))
            (count,) = cur.fetchone()
            excess = int(count) - self.max_rows
            if excess > 0:
                cur.execute(f"SELECT {q('session_id')} FROM {self.table} WHERE {q('channel')} = {p}"
                            f" ORDER BY {q('session_id')}", (self.owner_id,))
                oldest = cur.fetchmany(excess)
                cur.fetchall()
                if oldest:
                    cur.execute(f"DELETE FROM {self.table} WHERE {q('channel')} = {p} AND {q('session_id')} <= {p}",
                                (self.owner_id, oldest[-1][0]))
                    deleted += max(cur.rowcount or 0, 0)
        return deleted


def ensure_table(conn: Connection, dialect: Dialect) -> None:
    schema, table = kernel_ref(dialect, TABLE)
    dialect.ensure_schema(conn, schema)
    dialect.create_table(conn, schema, table, COLUMNS, ["session_id"])


def insert(conn: Connection, dialect: Dialect, sessions: Iterable[Session]) -> None:
    insert_rows(conn, dialect, dialect.kernel_table(TABLE), NAMES, [s.row() for s in sessions])


def _select(conn: Connection, dialect: Dialect, tail: str, args: Sequence[Any], limit: int) -> list[Session]:
    """Up to ``limit`` sessions of ``SELECT <columns> FROM <table> <tail>`` (none without the table)."""
    if not dialect.table_exists(conn, *kernel_ref(dialect, TABLE)):
        return []
    cur = conn.cursor()
    cur.execute(f"SELECT {dialect.columns_sql(NAMES)} FROM {dialect.kernel_table(TABLE)} {tail}", args)
    rows = cur.fetchmany(max(0, limit))
    cur.fetchall()
    return [Session.from_row({n: dialect.decode(BY_NAME[n], v) for n, v in zip(NAMES, r, strict=True)}) for r in rows]


def last(conn: Connection, dialect: Dialect, channel: str, status: str | None = None,
         kinds: Iterable[str] | None = None) -> Session | None:
    """The newest session of ``channel`` (with that status / one of those kinds), in the caller's transaction."""
    q, p = dialect.quote_ident, dialect.placeholder
    where, args = [f"{q('channel')} = {p}"], [channel]
    if status is not None:
        where.append(f"{q('status')} = {p}")
        args.append(status)
    kinds = list(kinds or ())
    if kinds:
        where.append(f"{q('kind')} IN ({', '.join([p] * len(kinds))})")
        args += kinds
    found = _select(conn, dialect, f"WHERE {q('session_id')} = (SELECT MAX({q('session_id')}) FROM"
                                   f" {dialect.kernel_table(TABLE)} WHERE {' AND '.join(where)})", args, 1)
    return found[0] if found else None


def recent(conn: Connection, dialect: Dialect, channel: str, limit: int = 20) -> list[Session]:
    """The newest ``limit`` sessions of ``channel``, newest first (caller's transaction)."""
    q, p = dialect.quote_ident, dialect.placeholder
    return _select(conn, dialect, f"WHERE {q('channel')} = {p} ORDER BY {q('session_id')} DESC", (channel,), limit)
