"""Change tracking for SQL Server: its native Change Tracking.

- ``enable``: ``ALTER DATABASE CURRENT SET CHANGE_TRACKING = ON (CHANGE_RETENTION = n
  {DAYS|HOURS|MINUTES}, AUTO_CLEANUP = ON)`` when off (when already on, the retention is
  only ever raised: other consumers, such as AX's own retail CDX, may rely on it),
  ``ALLOW_SNAPSHOT_ISOLATION ON`` (reads below are consistent only under snapshot
  isolation) and ``ALTER TABLE ... ENABLE CHANGE_TRACKING`` per table. Run outside a
  transaction (autocommit), as ALTER DATABASE requires.
- ``changes``: under ``SNAPSHOT`` isolation, ``CHANGE_TRACKING_CURRENT_VERSION()`` and
  ``CHANGETABLE(CHANGES t, @since)`` LEFT JOINed to the table for the current row;
  ``TOP (@limit) WITH TIES ... ORDER BY SYS_CHANGE_VERSION`` keeps whole versions.
- ``min_valid_version``: ``CHANGE_TRACKING_MIN_VALID_VERSION(OBJECT_ID(...))``.
- ``cleanup``: the database's retention (set first when given) and
  ``sys.sp_flush_CT_internal_table_on_demand`` (SQL Server 2016 SP2+) per tracked table;
  SQL Server's minimum retention is one minute.
- ``disable`` needs explicit tables and leaves the database setting on.

Here ``limit`` counts changed keys (CHANGETABLE rows), versions are per transaction, and
the op is normalised as the interface says (a key whose row is gone is D).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import timedelta
from typing import Any

from cdx.connectors.capture.tracking.base import (
    DEFAULT_RETENTION,
    Change,
    ChangeTracker,
    TableLike,
    TableRef,
)
from cdx.dialects import get_dialect, key_columns
from cdx.errors import ConfigError

_UNITS = {1: 1, 2: 60, 3: 1440}  # sys.change_tracking_databases.retention_period_units -> minutes


def retention_clause(retention: timedelta) -> tuple[str, int]:
    """``CHANGE_RETENTION`` text for ``retention`` (at least one minute) and its minutes."""
    minutes = max(1, -(-int(retention.total_seconds()) // 60))
    if minutes % 1440 == 0:
        return f"{minutes // 1440} DAYS", minutes
    if minutes % 60 == 0:
        return f"{minutes // 60} HOURS", minutes
    return f"{minutes} MINUTES", minutes


class SQLServerChangeTracker(ChangeTracker):
    dialect = get_dialect("sqlserver")

    @contextmanager
    def _autocommit(self) -> Iterator[Any]:
        self.conn.commit()
        self.conn.autocommit = True
        try:
            yield self.conn
        finally:
            self.conn.autocommit = False

    @contextmanager
    def _snapshot(self) -> Iterator[Any]:
        self.conn.commit()
        self.conn.execute("SET TRANSACTION ISOLATION LEVEL SNAPSHOT")
        try:
            yield self.conn
            self.conn.commit()
        except BaseException:
            self.conn.rollback()
            raise
        finally:
            self.conn.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")

    def _scalar(self, sql: str, *params: Any) -> Any:
        row = self.conn.execute(sql, *params).fetchone()
        return row[0] if row else None

    # -- enable / disable ----------------------------------------------------------------
    def enable(self, tables: Iterable[TableLike], retention: timedelta = DEFAULT_RETENTION) -> None:
        refs = [TableRef.parse(t) for t in tables]
        for ref in refs:  # clear errors for missing / keyless tables before changing anything
            self.dialect.introspect_columns(self.conn, ref.schema, ref.name)
        clause, minutes = retention_clause(retention)
        with self._autocommit():
            row = self.conn.execute("SELECT retention_period, retention_period_units"
                                    " FROM sys.change_tracking_databases WHERE database_id = DB_ID()").fetchone()
            if row is None:
                self.conn.execute("ALTER DATABASE CURRENT SET CHANGE_TRACKING = ON"
                                  f" (CHANGE_RETENTION = {clause}, AUTO_CLEANUP = ON)")
            elif int(row[0]) * _UNITS.get(int(row[1]), 1440) < minutes:
                self.conn.execute(f"ALTER DATABASE CURRENT SET CHANGE_TRACKING (CHANGE_RETENTION = {clause})")
            if self._scalar("SELECT snapshot_isolation_state FROM sys.databases WHERE database_id = DB_ID()") != 1:
                self.conn.execute("ALTER DATABASE CURRENT SET ALLOW_SNAPSHOT_ISOLATION ON")
            for ref in refs:
                target = self.dialect.qualified(ref.schema or "dbo", ref.name)
                self.conn.execute(
                    "IF NOT EXISTS (SELECT 1 FROM sys.change_tracking_tables WHERE object_id = OBJECT_ID(?))"
                    f" ALTER TABLE {target} ENABLE CHANGE_TRACKING WITH (TRACK_COLUMNS_UPDATED = OFF)", (target,))

    def disable(self, tables: Iterable[TableLike] | None = None) -> None:
        if tables is None:
            raise ConfigError("on SQL Server, name the tables to stop tracking: other consumers may use"
                              " Change Tracking on this database")
        with self._autocommit():
            for ref in (TableRef.parse(t) for t in tables):
                target = self.dialect.qualified(ref.schema or "dbo", ref.name)
                self.conn.execute(
                    "IF EXISTS (SELECT 1 FROM sys.change_tracking_tables WHERE object_id = OBJECT_ID(?))"
                    f" ALTER TABLE {target} DISABLE CHANGE_TRACKING", (target,))

    # -- versions ----------------------------------------------------------------------
    def current_version(self) -> int:
        version = self._scalar("SELECT CHANGE_TRACKING_CURRENT_VERSION()")
        self.conn.commit()
        if version is None:
            raise ConfigError("change tracking is not enabled on this SQL Server database;"
                              " run `cdx hq enable-tracking` first")
        return int(version)

    def _min_valid(self, ref: TableRef) -> int:
        version = self._scalar("SELECT CHANGE_TRACKING_MIN_VALID_VERSION(OBJECT_ID(?))",
                               self.dialect.qualified(ref.schema or "dbo", ref.name))
        if version is None:
            raise ConfigError(f"table {ref} is not change-tracked; run enable() for it first")
        return int(version)

    def min_valid_version(self, table: TableLike) -> int:
        ref = TableRef.parse(table)
        self.dialect.introspect_columns(self.conn, ref.schema, ref.name)
        version = self._min_valid(ref)
        self.conn.commit()
        return version

    # -- reads -------------------------------------------------------------------------
    def changes(self, table: TableLike, since_version: int, limit: int | None = None, *,
                stamped: bool = False) -> tuple[list[Change], int]:
        ref = TableRef.parse(table)
        self._check_limit(limit)
        columns = self.dialect.introspect_columns(self.conn, ref.schema, ref.name)  # outside the snapshot:
        keys = key_columns(columns)  # catalog reads there can fail after concurrent DDL (error 3961)
        d = self.dialect
        target = d.qualified(ref.schema or "dbo", ref.name)
        top = "TOP (@limit) WITH TIES " if limit is not None else ""
        # CHANGETABLE takes a bigint variable, not an expression: declare it
        sql = (f"DECLARE @since bigint = ?; DECLARE @limit bigint = ?;"
               f" SELECT {top}ct.SYS_CHANGE_OPERATION, ct.SYS_CHANGE_VERSION,"
               f" CASE WHEN t.{d.quote_ident(keys[0])} IS NULL THEN 0 ELSE 1 END, {d.columns_sql(keys, 'ct')},"
               f" {d.columns_sql([c.name for c in columns], 't')}"
               f" FROM CHANGETABLE(CHANGES {target}, @since) AS ct"
               f" LEFT JOIN {target} AS t ON {d.match_sql(keys, 't', 'ct')}"
               " ORDER BY ct.SYS_CHANGE_VERSION")
        with self._snapshot():
            current = self._scalar("SELECT CHANGE_TRACKING_CURRENT_VERSION()")
            if current is None:
                raise ConfigError("change tracking is not enabled on this SQL Server database;"
                                  " run `cdx hq enable-tracking` first")
            self._check_since(ref, since_version, self._min_valid(ref), int(current))
            rows = self.conn.execute(sql, since_version, limit).fetchall()
        reached = int(rows[-1][1]) if limit is not None and len(rows) >= limit else int(current)
        return self._change_list(rows, keys, columns), max(reached, since_version)

    def _chunk_read(self) -> AbstractContextManager[Any]:
        return self._snapshot()

    # -- cleanup -----------------------------------------------------------------------
    def cleanup(self, retention: timedelta | None = None) -> None:
        with self._autocommit():
            if retention is not None:
                clause, _ = retention_clause(retention)
                self.conn.execute(f"ALTER DATABASE CURRENT SET CHANGE_TRACKING (CHANGE_RETENTION = {clause})")
            names = [r[0] for r in self.conn.execute(
                "SELECT QUOTENAME(OBJECT_SCHEMA_NAME(object_id)) + '.' + QUOTENAME(OBJECT_NAME(object_id))"
                " FROM sys.change_tracking_tables").fetchall()]
            for name in names:
                self.conn.execute("EXEC sys.sp_flush_CT_internal_table_on_demand @TableToClean = ?", (name,))

