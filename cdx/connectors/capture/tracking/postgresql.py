"""Change tracking for PostgreSQL: statement triggers + commit-time version stamping.

Objects (schema ``cdx``):

- ``changes(seq bigserial, xid xid8 DEFAULT pg_current_xact_id(), table_id, op, pk jsonb)``:
  appended by AFTER ... FOR EACH STATEMENT triggers (transition tables) on each tracked
  table: I/D per inserted/deleted key; for UPDATE, U per key in both old and new rows,
  D/I for keys that changed; T for TRUNCATE. No version yet: a trigger runs before
  commit, and neither a sequence nor xids follow commit order.
- ``versions(xid PRIMARY KEY, version UNIQUE, stamped_at)``: one version per committed
  transaction, assigned by the reader ("stamping").
- ``clock(version, stamped_below, retention)``: the last version handed out; every
  transaction with ``xid < stamped_below`` that wrote changes has a version.
- ``tracked_tables(table_id, schema_name, table_name, key_columns, min_valid_version)``.

Stamping, in a short READ COMMITTED transaction that first locks the clock row (so
stampers are serialised) then runs one statement: every change row *visible* to that
statement and not yet stamped belongs to a committed transaction (rows of running or
aborted ones are invisible), so each such xid gets the next versions (ordered by its last
change, which respects the order of transactions that touched the same row), and the
clock moves to the highest. The clock row and the version rows commit together, so a
REPEATABLE READ reader that sees clock = C also sees every version <= C, and any
transaction still running then is stamped later, above C: nothing is ever skipped.
A long-running writer only delays its own changes; ``stamped_below`` (the snapshot's
xmin) bounds the scan for unstamped rows.

Trigger functions are SECURITY DEFINER, so HQ writers need no rights on ``cdx``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

from psycopg import pq

from cdx.connectors.capture.tracking.base import (
    Change,
    TableLike,
    TableRef,
    TriggerTracker,
)
from cdx.dialects import ColumnInfo, get_dialect
from cdx.errors import ConfigError

_LOCK = 0x6364785F747261  # pg_advisory_xact_lock key serialising enable/disable ("cdx_tra")
_SETUP = """
CREATE SCHEMA IF NOT EXISTS cdx;
CREATE TABLE IF NOT EXISTS cdx.clock (
  id smallint PRIMARY KEY DEFAULT 1 CHECK (id = 1), version bigint NOT NULL,
  stamped_below xid8 NOT NULL, retention interval NOT NULL);
CREATE TABLE IF NOT EXISTS cdx.tracked_tables (
  table_id serial PRIMARY KEY, schema_name text NOT NULL, table_name text NOT NULL,
  key_columns text[] NOT NULL, min_valid_version bigint NOT NULL, UNIQUE (schema_name, table_name));
CREATE TABLE IF NOT EXISTS cdx.changes (
  seq bigserial PRIMARY KEY, xid xid8 NOT NULL DEFAULT pg_current_xact_id(), table_id integer NOT NULL,
  op text NOT NULL CHECK (op IN ('I', 'U', 'D', 'T')), pk jsonb NOT NULL);
CREATE INDEX IF NOT EXISTS changes_xid ON cdx.changes (xid, table_id);
CREATE INDEX IF NOT EXISTS changes_truncates ON cdx.changes (table_id) WHERE op = 'T';
CREATE TABLE IF NOT EXISTS cdx.versions (
  xid xid8 PRIMARY KEY, version bigint NOT NULL UNIQUE, stamped_at timestamptz NOT NULL);
"""
_STAMP = """
WITH snap AS (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin),
clock AS (SELECT version, stamped_below FROM cdx.clock WHERE id = 1),
fin AS (
  SELECT c.xid, max(c.seq) AS last_seq FROM cdx.changes AS c, clock
  WHERE c.xid >= clock.stamped_below AND NOT EXISTS (SELECT 1 FROM cdx.versions AS v WHERE v.xid = c.xid)
  GROUP BY c.xid),
ins AS (
  INSERT INTO cdx.versions (xid, version, stamped_at)
  SELECT fin.xid, clock.version + row_number() OVER (ORDER BY fin.last_seq), clock_timestamp() FROM fin, clock
  RETURNING version)
UPDATE cdx.clock SET version = coalesce((SELECT max(version) FROM ins), clock.version),
  stamped_below = greatest(clock.stamped_below, (SELECT xmin FROM snap))
WHERE clock.id = 1
"""
_OPS = ("ins", "upd", "del", "trn")
_SHAPE_OF = (
    "SELECT ROW(c.oid, c.xmin::text,"
    " (SELECT string_agg(a.attnum || ':' || a.xmin::text, ',' ORDER BY a.attnum) FROM pg_catalog.pg_attribute AS a"
    "  WHERE a.attrelid = c.oid AND a.attnum > 0),"
    " (SELECT string_agg(i.xmin::text, ',') FROM pg_catalog.pg_index AS i WHERE i.indrelid = c.oid AND i.indisprimary)"
    ")::text FROM pg_catalog.pg_class AS c JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace"
    " WHERE n.nspname = %(pschema)s AND c.relname = %(pname)s AND c.relkind IN ('r', 'p')")
"""A token of a table's shape: changes whenever a DDL statement touches its columns or primary key."""


class PostgresChangeTracker(TriggerTracker):
    dialect = get_dialect("postgresql")
    TABLES, CURRENT = "cdx.", "SELECT version FROM cdx.clock"
    READ = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
    OWN_TABLES = ("cdx.changes", "cdx.versions", "cdx.clock", "cdx.tracked_tables")

    def __init__(self, conn: Any) -> None:
        super().__init__(conn)
        if conn.info.transaction_status != pq.TransactionStatus.IDLE:
            raise ValueError("the change tracker needs a dedicated connection that is not in a transaction")
        conn.autocommit = True  # transactions are explicit below
        self._known_installed = False
        self._shapes: dict[TableRef, tuple[str, list[ColumnInfo]]] = {}

    def _end(self, how: str) -> None:
        if self.conn.info.transaction_status != pq.TransactionStatus.IDLE:
            self.conn.execute(how)

    def _installed(self) -> bool:
        return self.conn.execute("SELECT to_regclass('cdx.clock') IS NOT NULL").fetchone()[0]

    def _require_installed(self) -> None:
        """``ConfigError`` unless change tracking is installed; checked once per connection (a capture pass
        must not pay a catalog query for it: ``disable()`` forgets it)."""
        if self._known_installed:
            return
        if not self._installed():
            raise ConfigError("change tracking is not enabled in this PostgreSQL database;"
                              " run `cdx hq enable-tracking` first")
        self._known_installed = True

    def _columns(self, ref: TableRef, keys: list[str], token: str | None = None) -> list[ColumnInfo]:
        """The table's columns, introspected again only when its catalog rows changed: one query reads the
        versions (``xmin``) of its ``pg_class``, ``pg_attribute`` and primary-key ``pg_index`` rows, which
        every ``ALTER TABLE`` that adds, drops, renames or retypes a column or changes the key rewrites
        (``token``: that shape, read already by the caller's statement)."""
        if token is None:
            row = self.conn.execute(_SHAPE_OF, self._physical(ref)).fetchone()
            token = row[0] if row else None
        cached = self._shapes.get(ref)
        if token is not None and cached is not None and cached[0] == token:
            return cached[1]
        columns = super()._columns(ref, keys)
        if token is not None:
            self._shapes[ref] = (token, columns)
        return columns

    def _physical(self, ref: TableRef) -> dict[str, str | None]:
        schema, name = self.dialect.physical_table(ref.schema or "public", ref.name)
        return {"pschema": schema, "pname": name}

    # -- enable / disable ----------------------------------------------------------------
    def _lock(self) -> None:
        self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))

    def _setup(self, retention: timedelta) -> None:
        self._lock()
        self.conn.execute(_SETUP)
        self.conn.execute("INSERT INTO cdx.clock (id, version, stamped_below, retention)"
                          " VALUES (1, 0, pg_snapshot_xmin(pg_current_snapshot()), %s)"
                          " ON CONFLICT (id) DO UPDATE SET retention = EXCLUDED.retention", (retention,))

    def _keys_in(self, keys: list[str]) -> Any:
        return keys

    def _install_triggers(self, ref: TableRef, table_id: int, columns: list[ColumnInfo], keys: list[str]) -> None:
        q = self.dialect.quote_ident
        target = self.dialect.qualified(ref.schema, ref.name)

        def pk(alias: str) -> str:
            return "jsonb_build_object(" + ", ".join(f"'{k}', {alias}.{q(k)}" for k in keys) + ")"

        insert = "INSERT INTO cdx.changes (table_id, op, pk)"
        bodies = {
            "ins": f"{insert} SELECT {table_id}, 'I', {pk('n')} FROM cdx_new AS n;",
            "upd": f"{insert} SELECT {table_id}, CASE WHEN o.k IS NULL THEN 'I' WHEN n.k IS NULL THEN 'D'"
                   f" ELSE 'U' END, coalesce(n.k, o.k)"
                   f" FROM (SELECT DISTINCT {pk('x')} AS k FROM cdx_new AS x) AS n"
                   f" FULL JOIN (SELECT DISTINCT {pk('x')} AS k FROM cdx_old AS x) AS o ON n.k = o.k;",
            "del": f"{insert} SELECT {table_id}, 'D', {pk('o')} FROM cdx_old AS o;",
            "trn": f"{insert} VALUES ({table_id}, 'T', '{{}}');",
        }
        events = {
            "ins": "AFTER INSERT ON {t} REFERENCING NEW TABLE AS cdx_new FOR EACH STATEMENT",
            "upd": "AFTER UPDATE ON {t} REFERENCING OLD TABLE AS cdx_old NEW TABLE AS cdx_new FOR EACH STATEMENT",
            "del": "AFTER DELETE ON {t} REFERENCING OLD TABLE AS cdx_old FOR EACH STATEMENT",
            "trn": "AFTER TRUNCATE ON {t} FOR EACH STATEMENT",
        }
        for op in _OPS:
            function = f"cdx.capture_{table_id}_{op}"
            self.conn.execute(
                f"CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER"
                f" SET search_path = pg_catalog, pg_temp AS $fn$ BEGIN {bodies[op]} RETURN NULL; END $fn$")
            self.conn.execute(f"DROP TRIGGER IF EXISTS cdx_capture_{op} ON {target}")
            self.conn.execute(f"CREATE TRIGGER cdx_capture_{op} {events[op].format(t=target)}"
                              f" EXECUTE FUNCTION {function}()")

    def _drop_triggers(self, table_id: int) -> None:
        for op in _OPS:
            self.conn.execute(f"DROP FUNCTION IF EXISTS cdx.capture_{table_id}_{op}() CASCADE")

    def disable(self, tables: Iterable[TableLike] | None = None) -> None:
        self._known_installed = False
        super().disable(tables)

    # -- versions ----------------------------------------------------------------------
    def _stamp(self) -> int:
        """Stamp the finished transactions; the clock's version after it (every version up to it assigned)."""
        with self._tx():
            self.conn.execute("SELECT 1 FROM cdx.clock WHERE id = 1 FOR UPDATE")
            return int(self.conn.execute(_STAMP + " RETURNING version").fetchone()[0])

    def current_version(self) -> int:
        self._require_installed()
        return self._stamp()  # one statement less per capture pass than reading the clock again

    def _tracked(self, ref: TableRef, since: int = 0, limit: int | None = None
                 ) -> tuple[int, list[str], int, int, int | None, str | None]:
        """(table_id, key columns, min valid version, the clock's version, cut, shape) in the current
        transaction, one statement; cut: with ``limit``, the version of the table's ``limit``-th change after
        ``since`` up to the clock (None: fewer changes); shape: the token ``_columns`` compares."""
        row = self.conn.execute(
            "SELECT t.table_id, t.key_columns, greatest(t.min_valid_version, (SELECT max(v.version)"
            "  FROM cdx.changes AS c JOIN cdx.versions AS v ON v.xid = c.xid"
            "  WHERE c.table_id = t.table_id AND c.op = 'T')), k.version,"
            " (SELECT v.version FROM cdx.versions AS v JOIN cdx.changes AS c ON c.xid = v.xid"
            "  WHERE %(limit)s::bigint IS NOT NULL AND v.version > %(since)s AND v.version <= k.version"
            "  AND c.table_id = t.table_id ORDER BY v.version OFFSET greatest(%(limit)s::bigint - 1, 0) LIMIT 1),"
            f" ({_SHAPE_OF})"
            " FROM cdx.tracked_tables AS t CROSS JOIN (SELECT version FROM cdx.clock WHERE id = 1) AS k"
            " WHERE t.schema_name = %(schema)s AND t.table_name = %(name)s",
            {"schema": ref.schema or "", "name": ref.name, "since": since, "limit": limit,
             **self._physical(ref)}).fetchone()
        if row is None:
            raise self._not_tracked(ref)
        return (int(row[0]), list(row[1]), int(row[2]), int(row[3]), None if row[4] is None else int(row[4]),
                row[5])

    def min_valid_version(self, table: TableLike) -> int:
        self.current_version()  # stamps
        with self._tx(self.READ):
            return self._tracked(TableRef.parse(table))[2]

    # -- reads -------------------------------------------------------------------------
    def changes(self, table: TableLike, since_version: int, limit: int | None = None, *,
                stamped: bool = False) -> tuple[list[Change], int]:
        ref = TableRef.parse(table)
        self._check_limit(limit)
        if not stamped:
            self.current_version()  # stamps
        with self._tx(self.READ):
            table_id, keys, min_valid, current, cut, shape = self._tracked(ref, since_version, limit)
            self._check_since(ref, since_version, min_valid, current)
            columns = self._columns(ref, keys, shape)
            upto = current if cut is None else cut
            rows = self.conn.execute(self._changes_sql(ref, keys, columns),
                                     {"since": since_version, "upto": upto, "tid": table_id}).fetchall()
        return self._change_list(rows, keys, columns), max(upto, since_version)

    def _changes_sql(self, ref: TableRef, keys: list[str], columns: Sequence[ColumnInfo]) -> str:
        d = self.dialect
        target = d.qualified(ref.schema, ref.name)
        return (
            "WITH r AS (SELECT c.pk, c.op, c.seq, v.version"
            "  FROM cdx.versions AS v JOIN cdx.changes AS c ON c.xid = v.xid"
            "  WHERE v.version > %(since)s AND v.version <= %(upto)s AND c.table_id = %(tid)s AND c.op <> 'T'),"
            " g AS (SELECT pk, (array_agg(op ORDER BY seq))[1] AS first_op, max(version) AS version,"
            "  max(seq) AS last_seq FROM r GROUP BY pk)"
            f" SELECT g.first_op, g.version, t.{d.quote_ident(keys[0])} IS NOT NULL, {d.columns_sql(keys, 'k')},"
            f" {d.columns_sql([c.name for c in columns], 't')}"
            f" FROM g CROSS JOIN LATERAL jsonb_populate_record(NULL::{target}, g.pk) AS k"
            f" LEFT JOIN {target} AS t ON {d.match_sql(keys, 't', 'k')}"
            " ORDER BY g.version, g.last_seq")

    # -- cleanup -----------------------------------------------------------------------
    def cleanup(self, retention: timedelta | None = None) -> None:
        self._require_installed()
        with self._tx():
            stored = self.conn.execute("SELECT retention FROM cdx.clock WHERE id = 1 FOR UPDATE").fetchone()[0]
            cutoff = self.conn.execute(
                "SELECT max(version) FROM cdx.versions WHERE stamped_at < clock_timestamp() - %s",
                (retention if retention is not None else stored,)).fetchone()[0]
            if cutoff is None:
                return
            self.conn.execute("DELETE FROM cdx.changes AS c USING cdx.versions AS v"
                              " WHERE v.xid = c.xid AND v.version <= %s", (cutoff,))
            self.conn.execute("DELETE FROM cdx.versions WHERE version <= %s", (cutoff,))
            self.conn.execute("UPDATE cdx.tracked_tables SET min_valid_version = greatest(min_valid_version, %s)",
                              (cutoff,))

