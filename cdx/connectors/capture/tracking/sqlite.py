"""Change tracking for SQLite: row triggers; the version is the change's sequence number.

Objects (no schemas, so ``cdx_``-prefixed tables):

- ``cdx_changes(seq INTEGER PRIMARY KEY AUTOINCREMENT, table_id, op, pk, at)``: one row per
  changed row, written by AFTER INSERT/UPDATE/DELETE triggers (``cdx_capture_<id>_<op>``);
  ``pk`` is a JSON object of the key (BLOB key columns as hex); an UPDATE that changes the
  key writes D for the old key and I for the new one; ``at`` is the julian day written.
- ``cdx_tracked_tables(table_id, schema_name, table_name, key_columns, min_valid_version)``,
  ``cdx_config(retention_seconds)``.

Version = ``seq``. SQLite has one writer at a time (a write transaction holds the lock
from its first write to its commit), so sequence order is commit order, and a reader's
snapshot holds every change up to the highest ``seq`` it sees: nothing can commit below
it later. ``current_version`` is ``sqlite_sequence``'s value (kept across cleanups).

Differences from SQL Server: one version per changed row, not per transaction (so a
batch boundary may fall inside a transaction); ``INSERT OR REPLACE`` deletes conflicting
rows without firing delete triggers unless ``PRAGMA recursive_triggers`` is on (cdx's own
connections turn it on).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from cdx.connectors.capture.tracking.base import (
    Change,
    TableLike,
    TableRef,
    TriggerTracker,
)
from cdx.dialects import ColumnInfo, LogicalType, get_dialect
from cdx.errors import ConfigError

_SETUP = """
CREATE TABLE IF NOT EXISTS cdx_config (id INTEGER PRIMARY KEY CHECK (id = 1), retention_seconds REAL NOT NULL);
CREATE TABLE IF NOT EXISTS cdx_tracked_tables (
  table_id INTEGER PRIMARY KEY, schema_name TEXT NOT NULL, table_name TEXT NOT NULL,
  key_columns TEXT NOT NULL, min_valid_version INTEGER NOT NULL, UNIQUE (schema_name, table_name));
CREATE TABLE IF NOT EXISTS cdx_changes (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, table_id INTEGER NOT NULL, op TEXT NOT NULL, pk TEXT NOT NULL,
  at REAL NOT NULL DEFAULT (julianday('now')));
CREATE INDEX IF NOT EXISTS cdx_changes_table ON cdx_changes (table_id, seq);
"""
_CURRENT = "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'cdx_changes'), 0)"
_OPS = ("ins", "upd", "del")


class SQLiteChangeTracker(TriggerTracker):
    dialect = get_dialect("sqlite")
    TABLES, CURRENT, WRITE = "cdx_", _CURRENT, "BEGIN IMMEDIATE"
    OWN_TABLES = ("cdx_changes", "cdx_tracked_tables", "cdx_config")

    def __init__(self, conn: Any) -> None:
        super().__init__(conn)
        if conn.in_transaction:
            raise ValueError("the change tracker needs a dedicated connection that is not in a transaction")

    def _end(self, how: str) -> None:
        (self.conn.commit if how == "COMMIT" else self.conn.rollback)()

    def _installed(self) -> bool:
        row = self.conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'cdx_changes'")
        return row.fetchone() is not None

    def _require_installed(self) -> None:
        if not self._installed():
            raise ConfigError("change tracking is not enabled in this SQLite database;"
                              " run `cdx hq enable-tracking` first")

    # -- enable / disable ----------------------------------------------------------------
    def _setup(self, retention: timedelta) -> None:
        for statement in _SETUP.split(";"):
            if statement.strip():
                self.conn.execute(statement)
        self.conn.execute("INSERT INTO cdx_config (id, retention_seconds) VALUES (1, ?) ON CONFLICT (id)"
                          " DO UPDATE SET retention_seconds = excluded.retention_seconds", (retention.total_seconds(),))

    def _install_triggers(self, ref: TableRef, table_id: int, columns: list[ColumnInfo], keys: list[str]) -> None:
        q = self.dialect.quote_ident
        by_name = {c.name: c for c in columns}

        def pk(alias: str) -> str:
            return "json_object(" + ", ".join(f"'{k}', {_key_expr(by_name[k], f'{alias}.{q(k)}')}"
                                              for k in keys) + ")"

        same = " AND ".join(f"NEW.{q(k)} IS OLD.{q(k)}" for k in keys)
        insert = f"INSERT INTO cdx_changes (table_id, op, pk) SELECT {table_id},"
        bodies = {
            "ins": f"AFTER INSERT ON {{t}} BEGIN {insert} 'I', {pk('NEW')}; END",
            "upd": f"AFTER UPDATE ON {{t}} BEGIN {insert} 'U', {pk('NEW')} WHERE {same};"
                   f" {insert} 'D', {pk('OLD')} WHERE NOT ({same}); {insert} 'I', {pk('NEW')} WHERE NOT ({same}); END",
            "del": f"AFTER DELETE ON {{t}} BEGIN {insert} 'D', {pk('OLD')}; END",
        }
        target = self.dialect.qualified(ref.schema, ref.name)
        for op in _OPS:
            self.conn.execute(f"DROP TRIGGER IF EXISTS cdx_capture_{table_id}_{op}")
            self.conn.execute(f"CREATE TRIGGER cdx_capture_{table_id}_{op} {bodies[op].format(t=target)}")

    def _drop_triggers(self, table_id: int) -> None:
        for op in _OPS:
            self.conn.execute(f"DROP TRIGGER IF EXISTS cdx_capture_{table_id}_{op}")

    # -- versions ----------------------------------------------------------------------
    def current_version(self) -> int:
        self._require_installed()
        return int(self.conn.execute(_CURRENT).fetchone()[0])

    def _tracked(self, ref: TableRef) -> tuple[int, list[str], int]:
        row = self.conn.execute("SELECT table_id, key_columns, min_valid_version FROM cdx_tracked_tables"
                                " WHERE schema_name = ? AND table_name = ?", (ref.schema or "", ref.name)).fetchone()
        if row is None:
            raise self._not_tracked(ref)
        return int(row[0]), json.loads(row[1]), int(row[2])

    def min_valid_version(self, table: TableLike) -> int:
        self._require_installed()
        return self._tracked(TableRef.parse(table))[2]

    # -- reads -------------------------------------------------------------------------
    def changes(self, table: TableLike, since_version: int, limit: int | None = None, *,
                stamped: bool = False) -> tuple[list[Change], int]:
        ref = TableRef.parse(table)
        self._check_limit(limit)
        self._require_installed()
        with self._tx():  # a read transaction: one WAL snapshot for every statement below
            current = int(self.conn.execute(_CURRENT).fetchone()[0])
            table_id, keys, min_valid = self._tracked(ref)
            self._check_since(ref, since_version, min_valid, current)
            columns = self._columns(ref, keys)
            upto = current
            if limit is not None:
                cut = self.conn.execute("SELECT seq FROM cdx_changes WHERE table_id = ? AND seq > ? AND seq <= ?"
                                        " ORDER BY seq LIMIT 1 OFFSET ?",
                                        (table_id, since_version, current, limit - 1)).fetchone()
                upto = int(cut[0]) if cut else current
            rows = self.conn.execute(self._changes_sql(ref, keys, columns),
                                     (table_id, since_version, upto)).fetchall()
        by_name = {c.name: c for c in columns}
        out = []
        for first_op, version, pk, exists, *values in rows:
            raw = json.loads(pk)
            key = {k: _decode_key(self.dialect, by_name[k], raw[k]) for k in keys}
            row = self._row(columns, values) if exists else None
            out.append(Change(self._net_op(first_op, bool(exists)), key, row, int(version)))
        return out, max(upto, since_version)

    def _changes_sql(self, ref: TableRef, keys: list[str], columns: Sequence[ColumnInfo]) -> str:
        d = self.dialect
        by_name = {c.name: c for c in columns}
        join = " AND ".join(f"{_key_expr(by_name[k], f't.{d.quote_ident(k)}')} = json_extract(g.pk, '$.{k}')"
                            for k in keys)
        return (
            "WITH r AS (SELECT seq, pk FROM cdx_changes WHERE table_id = ? AND seq > ? AND seq <= ?),"
            " g AS (SELECT pk, min(seq) AS first_seq, max(seq) AS version FROM r GROUP BY pk)"
            f" SELECT f.op, g.version, g.pk, t.{d.quote_ident(keys[0])} IS NOT NULL,"
            f" {d.columns_sql([c.name for c in columns], 't')}"
            f" FROM g JOIN cdx_changes AS f ON f.seq = g.first_seq"
            f" LEFT JOIN {d.qualified(ref.schema, ref.name)} AS t ON {join}"
            " ORDER BY g.version")

    # -- cleanup -----------------------------------------------------------------------
    def cleanup(self, retention: timedelta | None = None) -> None:
        self._require_installed()
        with self._tx(self.WRITE):
            seconds = retention.total_seconds() if retention is not None else float(
                self.conn.execute("SELECT retention_seconds FROM cdx_config WHERE id = 1").fetchone()[0])
            cutoff = self.conn.execute("SELECT max(seq) FROM cdx_changes WHERE at <= julianday('now') - ?",
                                       (seconds / 86400.0,)).fetchone()[0]
            if cutoff is None:
                return
            self.conn.execute("DELETE FROM cdx_changes WHERE seq <= ?", (cutoff,))
            self.conn.execute("UPDATE cdx_tracked_tables SET min_valid_version = max(min_valid_version, ?)",
                              (cutoff,))


def _key_expr(column: ColumnInfo, expr: str) -> str:
    """JSON cannot hold BLOBs: bytes key columns are stored (and compared) as hex."""
    return f"hex({expr})" if column.logical_type is LogicalType.BYTES else expr


def _decode_key(dialect: Any, column: ColumnInfo, value: Any) -> Any:
    if column.logical_type is LogicalType.BYTES and isinstance(value, str):
        return bytes.fromhex(value)
    return dialect.decode(column, value)
