"""A connection that records the SQL it is given instead of running it: lets the tests parse every
statement cdx generates for SQL Server with sqlglot's T-SQL dialect where no server runs.

It is not a stand-in for a database in any behavioural test: results are scripted only so that the
code under test reaches the statements it generates."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

Responder = Callable[[str], list[tuple[Any, ...]]]


class RecordingCursor:
    def __init__(self, conn: RecordingConnection) -> None:
        self.conn = conn
        self.rows: list[tuple[Any, ...]] = []
        self.rowcount = 0
        self.fast_executemany = False

    def execute(self, sql: str, *params: Any) -> RecordingCursor:
        self.conn.statements.append(sql)
        self.rows = list(self.conn.respond(sql))
        return self

    def executemany(self, sql: str, params: Sequence[Any]) -> None:
        self.conn.statements.append(sql)

    def fetchone(self) -> tuple[Any, ...] | None:
        return self.rows.pop(0) if self.rows else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        rows, self.rows = self.rows, []
        return rows

    def fetchmany(self, n: int) -> list[tuple[Any, ...]]:
        rows, self.rows = self.rows[:n], self.rows[n:]
        return rows

    def nextset(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def cancel(self) -> None:
        pass


class RecordingConnection:
    """pyodbc-shaped: ``execute``, ``cursor``, ``commit``, ``rollback``, ``autocommit``."""

    def __init__(self, respond: Responder | None = None) -> None:
        self.statements: list[str] = []
        self.respond: Responder = respond or (lambda sql: [])
        self.autocommit = False

    def execute(self, sql: str, *params: Any) -> RecordingCursor:
        return self.cursor().execute(sql, *params)

    def cursor(self) -> RecordingCursor:
        return RecordingCursor(self)

    def commit(self) -> None:
        pass

    def rollback(self) -> None:
        pass

    def close(self) -> None:
        pass


def catalog(columns: Sequence[tuple[str, str, int, int]]) -> Responder:
    """Answers the SQL Server dialect's catalog reads for one table: ``(name, type, max_length, key position)``."""
    def respond(sql: str) -> list[tuple[Any, ...]]:
        if re.search(r"OBJECT_ID\(\?, 'U'\)", sql):
            return [(1,)]
        if "FROM sys.columns" in sql:
            return [(n, t, m, 0, 0, 0 if k else 1, k) for n, t, m, k in columns]
        if "CHANGE_TRACKING_CURRENT_VERSION" in sql or "CHANGE_TRACKING_MIN_VALID_VERSION" in sql:
            return [(5,)]
        if "SELECT COUNT(*)" in sql:
            return [(0,)]
        if "snapshot_isolation_state" in sql:
            return [(0,)]
        return []
    return respond
