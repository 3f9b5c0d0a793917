"""HQ database access for the service: a small connection pool and a transaction helper.

Every statement binds its values; table and column names go through the dialect's quoting.
``Hq.transaction()`` runs one unit of work (commit on success, roll back on any error);
statements whose results nobody reads (``Tx.defer``) run just before the commit, in PostgreSQL
as one statement. A
database that cannot be reached, or a lock that cannot be had in time, surfaces as
:class:`HqUnavailable` (the API answers 503 with ``Retry-After``). A connection that failed
that way is closed rather than returned to the pool.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from cdx.cleanup import quietly
from cdx.dialects import Connection, classify_error
from cdx.errors import CdxError, RetriableError
from cdx.realtime.sqlcaps import SqlCaps, caps_for

log = logging.getLogger("cdx.realtime")
SCHEMA = "rts"
"""Schema of the service's own HQ tables (SQLite: ``rts_<TABLE>``)."""


class HqUnavailable(CdxError):
    """HQ cannot be reached (or is too busy) right now; the caller should retry later."""


class Tx:
    """One open transaction: statement helpers returning rows as dicts keyed by column name."""

    def __init__(self, conn: Connection, caps: SqlCaps) -> None:
        self.conn = conn
        self.caps = caps
        self.d = caps.dialect
        self.p = self.d.placeholder
        self.deferred: list[tuple[str, list[Any]]] = []

    def t(self, table: str) -> str:
        """The quoted name of one of the service's tables."""
        return self.d.qualified(SCHEMA, table)

    def q(self, name: str) -> str:
        return self.d.quote_ident(name)

    def cols(self, names: Sequence[str]) -> str:
        return self.d.columns_sql(names)

    def where(self, names: Sequence[str]) -> str:
        """``"A" = ? AND "B" = ?`` for ``names``."""
        return " AND ".join(f"{self.q(n)} = {self.p}" for n in names)

    def _run(self, sql: str, params: Sequence[Any]) -> Any:
        cur = self.conn.cursor()
        cur.execute(sql, [self.d.encode(v) for v in params])
        return cur

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return int(self._run(sql, params).rowcount or 0)

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        cur = self._run(sql, params)
        names = [c[0] for c in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def one(self, sql: str, params: Sequence[Any] = ()) -> dict[str, Any] | None:
        rows = self.all(sql, params)
        return rows[0] if rows else None

    def defer(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Run ``sql`` at commit, in this transaction, after every other statement (its result is not
        needed; an error fails the transaction as usual). Deferred statements are INSERT, UPDATE or
        DELETE, independent of each other: they may run as one statement on one snapshot."""
        self.deferred.append((sql, [self.d.encode(v) for v in params]))

    def update_returning(self, table_sql: str, assignments: str, condition: str, params: Sequence[Any],
                         columns: Sequence[str], key: Sequence[str], key_params: Sequence[Any]
                         ) -> dict[str, Any] | None:
        """``UPDATE table_sql SET assignments WHERE condition`` and the updated row's ``columns``,
        or None when no row matched. ``key``/``key_params`` identify the row where the dialect has
        no ``RETURNING`` and the row is read back."""
        update = f"UPDATE {table_sql} SET {assignments} WHERE {condition}"
        returning = self.caps.returning(columns)
        if returning is not None:
            return self.one(update + returning, params)
        if self.execute(update, params) != 1:
            return None
        return self.one(f"SELECT {self.cols(columns)} FROM {table_sql} WHERE {self.where(key)}", key_params)

    def insert(self, table_sql: str, row: dict[str, Any], *, deferred: bool = False) -> None:
        """Insert ``row``; ``deferred``: at commit (see ``defer``)."""
        values = ", ".join([self.p] * len(row))
        sql = f"INSERT INTO {table_sql} ({self.cols(list(row))}) VALUES ({values})"
        if deferred:
            self.defer(sql, list(row.values()))
        else:
            self.execute(sql, list(row.values()))

    def insert_if_absent(self, table_sql: str, row: dict[str, Any], key: Sequence[str]) -> bool:
        """Insert ``row`` unless a row with its ``key`` exists; True if inserted."""
        sql = self.caps.insert_if_absent(table_sql, list(row), key)
        return self.execute(sql, list(row.values())) == 1


class Hq:
    """A pool of at most ``size`` connections to the HQ database (thread-safe)."""

    def __init__(self, dialect_name: str, dsn: str, size: int = 8, wait_seconds: float = 10.0) -> None:
        self.caps = caps_for(dialect_name)
        self.dsn = dsn
        self.wait_seconds = wait_seconds
        self._idle: queue.LifoQueue[Connection] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(size)
        self.catalog: dict[Any, Any] = {}
        """Per-process cache of introspected HQ tables (their shape does not change while serving)."""

    @property
    def dialect_name(self) -> str:
        return self.caps.dialect.name

    def _acquire(self) -> Connection:
        if not self._slots.acquire(timeout=self.wait_seconds):
            raise HqUnavailable("every HQ connection is busy")
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        try:
            return self.caps.connect(self.dsn)
        except BaseException as exc:
            self._slots.release()
            mapped = _unavailable_or(exc)
            if mapped is exc:
                raise
            raise mapped from exc

    def _release(self, conn: Connection, healthy: bool) -> None:
        try:
            if healthy:
                self._idle.put(conn)
            else:
                quietly(conn.close, "closing a broken HQ connection", log)
        finally:
            self._slots.release()

    @contextmanager
    def transaction(self, write: bool = True) -> Iterator[Tx]:
        """One transaction on a pooled connection; ``write=False`` for reads (no write lock in SQLite)."""
        conn = self._acquire()
        healthy = True
        try:
            if write:
                with self.caps.dialect.transaction(conn):
                    tx = Tx(conn, self.caps)
                    yield tx
                    self.caps.finish(conn, tx.deferred)
            else:
                try:
                    yield Tx(conn, self.caps)
                finally:
                    conn.rollback()
        except BaseException as exc:
            healthy = not isinstance(exc, HqUnavailable) and classify_error(exc) is not RetriableError
            mapped = _unavailable_or(exc)
            if mapped is exc:
                raise
            raise mapped from exc
        finally:
            self._release(conn, healthy)

    def close(self) -> None:
        while True:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                return
            quietly(conn.close, "closing an idle HQ connection", log)


def _unavailable_or(exc: BaseException) -> BaseException:
    """``HqUnavailable`` for a transient database failure, else ``exc`` itself."""
    if isinstance(exc, CdxError) and not isinstance(exc, RetriableError):
        return exc
    if isinstance(exc, HqUnavailable) or classify_error(exc) is RetriableError:
        log.warning("HQ database unavailable: %s", str(exc).strip().splitlines()[0] if str(exc).strip() else exc)
        return exc if isinstance(exc, HqUnavailable) else HqUnavailable("HQ database unavailable")
    return exc
