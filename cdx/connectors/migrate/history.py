"""The history of extension scripts in one database (CDX's ``RETAILUPGRADEHISTORY``).

``cdx.cdx_extension_history`` (SQLite: ``cdx_extension_history``): one row per completed script,
``script`` (file name, primary key), ``checksum`` (SHA-256 of its normalised text), ``started_at``,
``finished_at`` (naive UTC) and ``duration_ms``. A row is written in the same transaction as the
script's statements, so a script is recorded if and only if it completed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cdx.dialects import ColumnInfo, Connection, Dialect, LogicalType
from cdx.stage.sessions import kernel_ref

TABLE = "cdx_extension_history"
COLUMNS = [
    ColumnInfo("script", LogicalType.STRING, nullable=False, length=255),
    ColumnInfo("checksum", LogicalType.STRING, nullable=False, length=64),
    ColumnInfo("started_at", LogicalType.TIMESTAMP, nullable=False),
    ColumnInfo("finished_at", LogicalType.TIMESTAMP, nullable=False),
    ColumnInfo("duration_ms", LogicalType.INT64, nullable=False),
]
NAMES = [c.name for c in COLUMNS]


@dataclass(frozen=True)
class Entry:
    script: str
    checksum: str
    started_at: dt.datetime
    finished_at: dt.datetime

    @property
    def duration_ms(self) -> int:
        return int((self.finished_at - self.started_at).total_seconds() * 1000)


def ensure(conn: Connection, dialect: Dialect) -> None:
    """Create the history table if it is missing (caller's transaction)."""
    schema, table = kernel_ref(dialect, TABLE)
    dialect.ensure_schema(conn, schema)
    dialect.create_table(conn, schema, table, COLUMNS, ["script"])


def recorded(conn: Connection, dialect: Dialect) -> dict[str, Entry]:
    """Every recorded script by file name (the table must exist)."""
    cur = conn.cursor()
    cur.execute(f"SELECT {dialect.columns_sql(NAMES[:4])} FROM {dialect.kernel_table(TABLE)}")
    return {str(script): Entry(str(script), str(digest), dialect.decode(COLUMNS[2], started),
                               dialect.decode(COLUMNS[3], finished))
            for script, digest, started, finished in cur.fetchall()}


def record(conn: Connection, dialect: Dialect, entry: Entry) -> None:
    """Insert ``entry`` in the caller's transaction."""
    p = dialect.placeholder
    values = [entry.script, entry.checksum, dialect.encode(entry.started_at), dialect.encode(entry.finished_at),
              entry.duration_ms]
    conn.cursor().execute(f"INSERT INTO {dialect.kernel_table(TABLE)} ({dialect.columns_sql(NAMES)})"
                          f" VALUES ({', '.join([p] * len(NAMES))})", values)


_LOCKS = {
    "postgresql": "LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE",
    "sqlserver": "SELECT TOP (0) 1 FROM {table} WITH (TABLOCKX, HOLDLOCK)",
}
"""How a script run takes the history table for itself (SQLite's ``BEGIN IMMEDIATE`` already does)."""


def lock_and_read(conn: Connection, dialect: Dialect, script: str) -> str | None:
    """Lock the history table until the caller's transaction ends (two runners on one database run a
    script once: the second waits, then sees it recorded) and return the script's recorded checksum."""
    table = dialect.kernel_table(TABLE)
    cur = conn.cursor()
    lock = _LOCKS.get(dialect.name)
    if lock is not None:
        cur.execute(lock.format(table=table))
        if dialect.name == "sqlserver":
            cur.fetchall()
    q = dialect.quote_ident
    cur.execute(f"SELECT {q('checksum')} FROM {table} WHERE {q('script')} = {dialect.placeholder}", (script,))
    row = cur.fetchone()
    return str(row[0]) if row else None
