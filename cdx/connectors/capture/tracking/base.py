"""The ``ChangeTracker`` interface: SQL Server Change Tracking semantics on every HQ database.

Versions
    One integer clock per database, increasing in commit order: a change that commits
    later never gets a version at or below one a reader has already been given. So a
    reader that remembers ``reached_version`` and asks for ``changes(since=reached)``
    never skips a change, however long the writing transaction ran.

Net changes
    ``changes(table, since)`` returns one ``Change`` per key changed in the version range
    ``(since, reached]``, with the row as it is *now* (read in the same snapshot as
    ``reached``; it may already include later changes, which are then reported again):

    - ``D``: the row does not exist now (``row`` is None) — also for a row inserted and
      deleted inside the range, as SQL Server reports it;
    - ``I``: the row exists now and did not exist at the start of the range;
    - ``U``: the row exists now and existed at the start of the range.

    I and U both carry the full current row: consumers should upsert either way.
    ``Change.version`` is the version of the key's last change in the range.

Batching
    ``limit`` caps the tracking entries read per call (a soft cap: a batch always holds
    whole versions, so one big transaction can exceed it); ``reached_version`` is the
    last version fully included. Call again with it until it equals ``current_version()``.

Validity
    ``since`` must be ``>= min_valid_version(table)`` (raised by ``enable``, ``cleanup``
    and, in PostgreSQL, by TRUNCATE), else ``ResyncRequired``: take a new ``snapshot``.

Snapshots
    ``snapshot_chunk(table, after, limit)`` reads the current rows in primary-key order, one short
    read transaction per chunk; with a version taken (``current_version``) before the first chunk,
    ``changes(since=version)`` brings every row changed meanwhile up to date.

Connections
    A tracker owns its connection: it runs and commits its own short transactions on it
    (``tracker.conn``; ``tracker.dialect`` is its ``cdx.dialects`` dialect).

Differences between dialects (all pass ``tests/conformance/test_change_tracking.py``)
    - Version granularity: one per transaction (SQL Server, PostgreSQL); one per changed
      row (SQLite), so there a ``limit`` boundary can fall inside a transaction.
    - A key deleted and re-inserted inside the range: U in PostgreSQL/SQLite (it existed at
      the range start), I in SQL Server (its creation version is in the range).
    - ``limit`` counts tracking rows (PostgreSQL/SQLite) or changed keys (SQL Server).
    - TRUNCATE raises ``min_valid_version`` (SQL Server, PostgreSQL); SQLite has none.
    - See each implementation's module docstring for how versions are made.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from cdx.dialects import ColumnInfo, Connection, Dialect, key_columns, validate_identifier
from cdx.errors import CdxError, ConfigError

DEFAULT_RETENTION = timedelta(days=2)


@dataclass(frozen=True)
class TableRef:
    """A tracked table, ``ax.INVENTTABLE`` (schema may be None: the default schema)."""

    schema: str | None
    name: str

    @classmethod
    def parse(cls, value: str | tuple[str | None, str] | TableRef) -> TableRef:
        if isinstance(value, TableRef):
            ref = value
        elif isinstance(value, tuple):
            ref = cls(value[0], value[1])
        else:
            schema, _, name = str(value).rpartition(".")
            ref = cls(schema or None, name)
        if ref.schema is not None:
            validate_identifier(ref.schema, "schema name")
        validate_identifier(ref.name, "table name")
        return ref

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name


TableLike = str | tuple[str | None, str] | TableRef


@dataclass(frozen=True)
class Change:
    """The net change of one key: ``op`` in I/U/D, ``key`` (key column -> value), ``row``
    (column -> value, None for D) and ``version`` (of the key's last change in the range)."""

    op: str
    key: dict[str, Any]
    row: dict[str, Any] | None
    version: int


class ResyncRequired(CdxError):
    """``since_version`` is no longer valid for ``table``: changes were cleaned up, the table
    was truncated or re-keyed, or tracking was reset. Take a new snapshot."""

    def __init__(self, table: TableRef, since_version: int, min_valid_version: int, current_version: int):
        super().__init__(
            f"change tracking for {table} cannot continue from version {since_version}: valid versions are"
            f" {min_valid_version}..{current_version}; take a new snapshot of the table")
        self.table = table
        self.since_version = since_version
        self.min_valid_version = min_valid_version
        self.current_version = current_version


class ChangeTracker(ABC):
    """One HQ database's change tracking (see module docstring for the contract)."""

    dialect: Dialect

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    @abstractmethod
    def enable(self, tables: Iterable[TableLike], retention: timedelta = DEFAULT_RETENTION) -> None:
        """Start tracking ``tables`` (idempotent). Raises ``ConfigError`` for a missing table or
        one without a primary key. ``retention``: how long tracking entries are kept."""

    @abstractmethod
    def disable(self, tables: Iterable[TableLike] | None = None) -> None:
        """Stop tracking ``tables`` and drop their tracking entries (None: every table)."""

    @abstractmethod
    def current_version(self) -> int:
        """The version of the last change committed and visible to readers."""

    @abstractmethod
    def min_valid_version(self, table: TableLike) -> int:
        """The oldest ``since_version`` that ``changes(table, ...)`` accepts."""

    @abstractmethod
    def changes(self, table: TableLike, since_version: int, limit: int | None = None, *,
                stamped: bool = False) -> tuple[list[Change], int]:
        """Net changes after ``since_version``, ordered by version, and the version reached.

        ``stamped``: the caller has just called ``current_version()`` for this pass over its tables, so
        a tracker that assigns versions when read (PostgreSQL) need not do it again for every table
        (transactions committed since are read by the next pass)."""

    def snapshot_chunk(self, table: TableLike, after: Sequence[Any] | None,
                       limit: int) -> tuple[list[dict[str, Any]], list[Any] | None]:
        """Up to ``limit`` current rows whose primary key is above ``after`` (raw key values as returned
        here for the previous chunk; None: from the start), in key order, read in one short read
        transaction, and the raw key of the last row (None when there are none).

        A snapshot taken chunk by chunk (resumable: ``after`` is all it needs) holds every row that
        exists throughout it, some rows as they were later than others; the changes after a version
        taken (``current_version``) before the first chunk bring every row changed meanwhile up to date.
        """
        ref = TableRef.parse(table)
        self._check_limit(limit)
        d = self.dialect
        with self._chunk_read():
            columns = d.introspect_columns(self.conn, ref.schema, ref.name)
            keys = key_columns(columns)
            if not keys:
                raise ConfigError(f"table {ref} has no primary key; it cannot be snapshotted in chunks")
            where, params = ("", []) if after is None else self._after_sql(keys, after)
            order = d.columns_sql(keys)
            sql = (f"SELECT {d.columns_sql([c.name for c in columns])} FROM {d.qualified(ref.schema, ref.name)}"
                   f"{where} ORDER BY {order}")
            sql += f" OFFSET 0 ROWS FETCH NEXT {int(limit)} ROWS ONLY" if d.name == "sqlserver" \
                else f" LIMIT {int(limit)}"
            cursor = self.conn.cursor()
            cursor.execute(sql, params)
            raw = cursor.fetchall()
            cursor.close()
        positions = [next(i for i, c in enumerate(columns) if c.name == k) for k in keys]
        last = [raw[-1][i] for i in positions] if raw else None
        return [self._row(columns, values) for values in raw], last

    def _after_sql(self, keys: list[str], after: Sequence[Any]) -> tuple[str, list[Any]]:
        """`` WHERE key > after`` in key order (a row-value comparison where the database has one)."""
        q, p = self.dialect.quote_ident, self.dialect.placeholder
        if len(after) != len(keys):
            raise ConfigError(f"a snapshot position holds {len(after)} key values; the key is now {keys}")
        if self.dialect.name != "sqlserver":
            cols = ", ".join(q(k) for k in keys)
            return f" WHERE ({cols}) > ({', '.join(p for _ in keys)})", list(after)
        terms, params = [], []
        for i, k in enumerate(keys):
            eq = [f"{q(x)} = {p}" for x in keys[:i]]
            terms.append("(" + " AND ".join([*eq, f"{q(k)} > {p}"]) + ")")
            params += [*after[:i], after[i]]
        return " WHERE " + " OR ".join(terms), params

    def _chunk_read(self) -> AbstractContextManager[Any]:
        """A short read-only transaction for one snapshot chunk (each dialect its own)."""
        raise NotImplementedError

    @abstractmethod
    def cleanup(self, retention: timedelta | None = None) -> None:
        """Remove tracking entries older than ``retention`` (default: the one given to ``enable``)
        and raise ``min_valid_version`` past them."""

    # -- helpers shared by the implementations --------------------------------------------
    def _columns(self, ref: TableRef, keys: list[str]) -> list[ColumnInfo]:
        """The table's columns now; ``ConfigError`` if its primary key is no longer ``keys``."""
        columns = self.dialect.introspect_columns(self.conn, ref.schema, ref.name)
        if key_columns(columns) != keys:
            raise ConfigError(f"the primary key of {ref} changed from {keys} to {key_columns(columns)};"
                              " run enable() for it again, then take a new snapshot")
        return columns

    def _row(self, columns: Sequence[ColumnInfo], values: Sequence[Any]) -> dict[str, Any]:
        if type(self.dialect).decode is Dialect.decode:  # the driver's values are already right (PostgreSQL)
            return dict(zip([c.name for c in columns], values, strict=True))
        return {c.name: self.dialect.decode(c, v) for c, v in zip(columns, values, strict=True)}

    def _change_list(self, rows: Iterable[Sequence[Any]], keys: list[str],
                     columns: Sequence[ColumnInfo]) -> list[Change]:
        """Rows of (first op, version, whether the row exists, the key's values, the row's values) as changes."""
        by_name, n = {c.name: c for c in columns}, len(keys)
        return [Change(self._net_op(str(op).strip(), bool(exists)),
                       {k: self.dialect.decode(by_name[k], v) for k, v in zip(keys, values[:n], strict=True)},
                       self._row(columns, values[n:]) if exists else None, int(version))
                for op, version, exists, *values in rows]

    @staticmethod
    def _check_since(table: TableRef, since: int, min_valid: int, current: int) -> None:
        if since < min_valid or since > current:
            raise ResyncRequired(table, since, min_valid, current)

    @staticmethod
    def _net_op(first_op: str, exists_now: bool) -> str:
        if not exists_now:
            return "D"
        return "I" if first_op == "I" else "U"

    @staticmethod
    def _check_limit(limit: int | None) -> None:
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")


class TriggerTracker(ChangeTracker):
    """What the trigger-based trackers (PostgreSQL, SQLite) share: their tables (``TABLES`` prefix: table
    ``<prefix>tracked_tables`` of (table_id, schema_name, table_name, key_columns, min_valid_version) and
    ``<prefix>changes`` rows per table_id), explicit transactions (``WRITE``, ``READ``: how a writing and a
    read-only one begin) and enabling / disabling tables. ``CURRENT`` is the SQL of the current version."""

    TABLES: str
    OWN_TABLES: tuple[str, ...]
    """Dropped by ``disable()`` of every table."""
    CURRENT: str
    WRITE = READ = "BEGIN"

    @contextmanager
    def _tx(self, begin: str = "BEGIN") -> Iterator[Any]:
        self.conn.execute(begin)
        try:
            yield self.conn
        except BaseException:
            self._end("ROLLBACK")
            raise
        self._end("COMMIT")

    def _chunk_read(self) -> AbstractContextManager[Any]:
        return self._tx(self.READ)

    @abstractmethod
    def _end(self, how: str) -> None:
        """End the open transaction, if any: ``COMMIT`` or ``ROLLBACK``."""

    @abstractmethod
    def _installed(self) -> bool: ...

    @abstractmethod
    def _setup(self, retention: timedelta) -> None:
        """Create the tracking objects (idempotent) and store ``retention`` (the ``enable`` transaction)."""

    @abstractmethod
    def _install_triggers(self, ref: TableRef, table_id: int, columns: list[ColumnInfo], keys: list[str]) -> None:
        """(Re)create the triggers of ``ref`` writing its changes under ``table_id``."""

    @abstractmethod
    def _drop_triggers(self, table_id: int) -> None: ...

    def _keys_in(self, keys: list[str]) -> Any:
        """Key columns as stored in (and read back from) ``tracked_tables``."""
        return json.dumps(keys)

    def enable(self, tables: Iterable[TableLike], retention: timedelta = DEFAULT_RETENTION) -> None:
        refs = [TableRef.parse(t) for t in tables]
        with self._tx(self.WRITE):
            self._setup(retention)
            for ref in refs:
                self._enable_table(ref)

    def _enable_table(self, ref: TableRef) -> None:
        columns = self.dialect.introspect_columns(self.conn, ref.schema, ref.name)
        keys = key_columns(columns)
        t, p = self.TABLES, self.dialect.placeholder
        row = self.conn.execute(f"SELECT table_id, key_columns FROM {t}tracked_tables WHERE schema_name = {p}"
                                f" AND table_name = {p}", (ref.schema or "", ref.name)).fetchone()
        if row is None:
            row = self.conn.execute(
                f"INSERT INTO {t}tracked_tables (schema_name, table_name, key_columns, min_valid_version)"
                f" VALUES ({p}, {p}, {p}, ({self.CURRENT})) RETURNING table_id, key_columns",
                (ref.schema or "", ref.name, self._keys_in(keys))).fetchone()
        elif self._keys_in(keys) != row[1]:  # re-keyed: old entries cannot be joined any more
            self.conn.execute(f"DELETE FROM {t}changes WHERE table_id = {p}", (row[0],))
            self.conn.execute(f"UPDATE {t}tracked_tables SET key_columns = {p}, min_valid_version = ({self.CURRENT})"
                              f" WHERE table_id = {p}", (self._keys_in(keys), row[0]))
        self._install_triggers(ref, int(row[0]), columns, keys)

    def disable(self, tables: Iterable[TableLike] | None = None) -> None:
        if not self._installed():
            return
        wanted = None if tables is None else {TableRef.parse(t) for t in tables}
        t, p = self.TABLES, self.dialect.placeholder
        with self._tx(self.WRITE):
            self._lock()
            for table_id, schema, name in self.conn.execute(
                    f"SELECT table_id, schema_name, table_name FROM {t}tracked_tables").fetchall():
                if wanted is not None and TableRef(schema or None, name) not in wanted:
                    continue
                self._drop_triggers(int(table_id))
                self.conn.execute(f"DELETE FROM {t}changes WHERE table_id = {p}", (table_id,))
                self.conn.execute(f"DELETE FROM {t}tracked_tables WHERE table_id = {p}", (table_id,))
            for name in self.OWN_TABLES if tables is None else ():  # only ours: cdx_state may share the schema
                self.conn.execute(f"DROP TABLE {name}")

    def _lock(self) -> None:
        """Serialise enabling and disabling (the write transaction does it where it locks the database)."""

    def _not_tracked(self, ref: TableRef) -> ConfigError:
        self.dialect.introspect_columns(self.conn, ref.schema, ref.name)  # a clearer error if missing
        return ConfigError(f"table {ref} is not change-tracked; run enable() for it first")
