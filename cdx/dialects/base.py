"""The ``Dialect`` contract: one small object per database, no ``if dialect ==`` elsewhere.

Conventions shared by every method:

- ``conn`` is a DB-API connection opened by ``Dialect.connect`` (``sqlite3``,
  psycopg 3, pyodbc). Nothing here commits: the caller owns the transaction (use
  ``transaction(conn)``), so a sink can store its offsets in the same transaction
  as its rows.
- Tables are named by configuration as ``schema`` + ``table``; both are validated
  (``^[A-Za-z_][A-Za-z0-9_]*$``) and always quoted, never formatted raw into SQL.
  ``physical_table`` says where such a table lives (SQLite has no schemas).
- Rows and keys are sequences of Python values (see ``cdx.dialects.types``) in the
  order of the ``columns`` / ``key_columns`` given with them.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, ClassVar

from cdx.dialects.types import ColumnInfo, LogicalType
from cdx.errors import CdxError, ConfigError, FatalError, RetriableError, SkippableError

Connection = Any
"""A DB-API connection of the dialect's driver."""

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
STATE_TABLE = "cdx_state"
ZERO_DEFAULTS = {
    LogicalType.INT32: "0", LogicalType.INT64: "0", LogicalType.FLOAT64: "0", LogicalType.DECIMAL: "0",
    LogicalType.BOOL: "0", LogicalType.STRING: "''", LogicalType.BYTES: "X''", LogicalType.DATE: "'1900-01-01'",
    LogicalType.TIMESTAMP: "'1900-01-01 00:00:00'", LogicalType.UUID: "'00000000-0000-0000-0000-000000000000'",
}
"""Empty values as SQL literals (``Dialect.zero_default``); AX stores 1900-01-01 for "no date"."""
KERNEL_SCHEMA = "cdx"


def validate_identifier(name: object, what: str = "identifier", max_length: int = 128) -> str:
    """Return ``name`` if it is a safe SQL identifier, else raise ``ConfigError``."""
    if not isinstance(name, str) or not IDENTIFIER.match(name):
        raise ConfigError(f"invalid {what} {name!r}: use letters, digits and '_' only, not starting with a"
                          " digit (pattern ^[A-Za-z_][A-Za-z0-9_]*$)")
    if len(name) > max_length:
        raise ConfigError(f"invalid {what} {name!r}: longer than {max_length} characters")
    return name


def display_name(schema: str | None, table: str) -> str:
    """``ax.INVENTTABLE`` as users write it (for messages)."""
    return f"{schema}.{table}" if schema else table


def missing_table(schema: str | None, table: str, dialect: str) -> ConfigError:
    return ConfigError(f"table {display_name(schema, table)} does not exist in the {dialect} database;"
                       " create it or fix the table name in the configuration")


def no_primary_key(schema: str | None, table: str) -> ConfigError:
    return ConfigError(f"table {display_name(schema, table)} has no primary key; cdx needs one to key"
                       " records; add one")


def unsupported_type(schema: str | None, table: str, column: str, db_type: str) -> ConfigError:
    return ConfigError(f"column {display_name(schema, table)}.{column} has type {db_type!r}, which cdx does"
                       " not support; change its type or leave the table out")


class Dialect(ABC):
    """Capabilities of one database. Instances are stateless singletons (``get_dialect``)."""

    name: ClassVar[str]
    placeholder: ClassVar[str] = "?"
    max_identifier_length: ClassVar[int] = 128

    # -- connections -------------------------------------------------------------------
    @abstractmethod
    def connect(self, dsn: str) -> Connection:
        """Open a connection (not in autocommit; see ``transaction``)."""

    @abstractmethod
    def transaction(self, conn: Connection) -> AbstractContextManager[Connection]:
        """Run the block in one transaction: commit on success, roll back on any exception.

        Not reentrant. In SQLite the transaction starts with ``BEGIN IMMEDIATE`` (takes the
        write lock up front, so two writers wait instead of failing on lock upgrade).
        """

    # -- identifiers -------------------------------------------------------------------
    def quote_ident(self, name: str) -> str:
        """Validate ``name`` and quote it for this dialect."""
        return self._quote(validate_identifier(name, max_length=self.max_identifier_length))

    @abstractmethod
    def _quote(self, name: str) -> str: ...

    def physical_table(self, schema: str | None, table: str) -> tuple[str | None, str]:
        """Where ``schema.table`` lives: ``(schema, table)``; SQLite: ``(None, "<schema>_<table>")``."""
        if schema is not None:
            validate_identifier(schema, "schema name", self.max_identifier_length)
        validate_identifier(table, "table name", self.max_identifier_length)
        return schema, table

    def qualified(self, schema: str | None, table: str) -> str:
        """The quoted name to use in SQL for ``schema.table``."""
        phys_schema, phys_table = self.physical_table(schema, table)
        if phys_schema is None:
            return self.quote_ident(phys_table)
        return f"{self.quote_ident(phys_schema)}.{self.quote_ident(phys_table)}"

    def kernel_table(self, name: str) -> str:
        """Quoted name of a cdx-owned table (``cdx.<name>``; SQLite: ``<name>``, e.g. ``cdx_state``)."""
        return f"{self.quote_ident(KERNEL_SCHEMA)}.{self.quote_ident(name)}"

    def columns_sql(self, names: Sequence[str], alias: str | None = None) -> str:
        prefix = f"{alias}." if alias else ""
        return ", ".join(prefix + self.quote_ident(n) for n in names)

    def match_sql(self, names: Sequence[str], left: str, right: str) -> str:
        """``left.k1 = right.k1 AND ...``."""
        return " AND ".join(f"{left}.{self.quote_ident(n)} = {right}.{self.quote_ident(n)}" for n in names)

    # -- types -------------------------------------------------------------------------
    @abstractmethod
    def type_ddl(self, column: ColumnInfo) -> str:
        """The column type of ``column.logical_type`` (with length/precision) in DDL."""

    def column_ddl(self, column: ColumnInfo, nullable: bool | None = None) -> str:
        null = column.nullable if nullable is None else nullable
        default = f" DEFAULT {column.default}" if column.default is not None else ""
        return f"{self.quote_ident(column.name)} {self.type_ddl(column)} {'NULL' if null else 'NOT NULL'}{default}"

    zero_defaults: ClassVar[dict[LogicalType, str]] = {}
    """Per-dialect replacements of :data:`ZERO_DEFAULTS`."""

    def zero_default(self, column: ColumnInfo) -> str:
        """The SQL literal of the column type's empty value (AX's: 0, '', 1900-01-01...), the DEFAULT of
        extension columns, which are NOT NULL."""
        return self.zero_defaults.get(column.logical_type, ZERO_DEFAULTS[column.logical_type])

    @abstractmethod
    def introspect_columns(self, conn: Connection, schema: str | None, table: str, *,
                           require_primary_key: bool = True) -> list[ColumnInfo]:
        """The table's columns in table order, read from the catalog.

        Raises ``ConfigError`` when the table does not exist, has a column of a type cdx
        cannot map, or (with ``require_primary_key``) has no primary key.
        """

    @abstractmethod
    def table_exists(self, conn: Connection, schema: str | None, table: str) -> bool:
        """Whether ``schema.table`` exists as a base table."""

    def encode(self, value: Any) -> Any:
        """A Python value (see ``cdx.dialects.types``) as the driver should bind it."""
        return value

    def decode(self, column: ColumnInfo, value: Any) -> Any:
        """A value read from the driver as the Python type of ``column.logical_type``."""
        return value

    def has_foreign_keys(self, conn: Connection, schema: str | None, table: str) -> bool:
        """Whether an enforced foreign key starts from or references ``schema.table`` (default: the
        dialect enforces none on cdx's connections, e.g. SQLite without ``PRAGMA foreign_keys``)."""
        return False

    # -- DDL ---------------------------------------------------------------------------
    @abstractmethod
    def ensure_schema(self, conn: Connection, schema: str | None) -> None:
        """Create the schema if it is missing (no-op in SQLite or for ``None``)."""

    def create_table(self, conn: Connection, schema: str | None, table: str, columns: Sequence[ColumnInfo],
                     primary_key: Sequence[str]) -> None:
        """Create the table if it does not exist (an existing table is left as it is).

        ``primary_key`` (key order) is required and authoritative (``ColumnInfo.primary_key``
        is ignored here); its columns are made NOT NULL. Does not commit (DDL is transactional
        in all three databases).
        """
        names = [c.name for c in columns]
        _check_keys(names, primary_key, display_name(schema, table))
        if len(set(names)) != len(names):
            raise ConfigError(f"table {display_name(schema, table)}: duplicate column names in {names}")
        body = [self.column_ddl(c, nullable=False if c.name in primary_key else None) for c in columns]
        body.append(f"PRIMARY KEY ({self.columns_sql(primary_key)})")
        conn.execute(self._create_table_sql(self.qualified(schema, table), ", ".join(body)))

    def add_column(self, conn: Connection, schema: str | None, table: str, column: ColumnInfo) -> bool:
        """Add ``column``: NOT NULL when it has a ``default`` (existing rows get it), else NULLable
        (existing rows have no value). False if it exists."""
        existing = {c.name for c in self.introspect_columns(conn, schema, table, require_primary_key=False)}
        if column.name in existing:
            return False
        ddl = self.column_ddl(column, nullable=column.default is None)
        conn.execute(f"ALTER TABLE {self.qualified(schema, table)} ADD {ddl}")
        return True

    # -- bulk apply (channel sinks, HQ upload sink) --------------------------------------
    @abstractmethod
    def upsert_rows(self, conn: Connection, schema: str | None, table: str, columns: Sequence[str],
                    key_columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
        """Insert or update ``rows`` by ``key_columns`` (the table's primary key).

        When a key occurs more than once in ``rows`` the last row wins. Columns not in
        ``columns`` keep their value on update. Returns the row count the database reports
        (informational). Does not commit.
        """

    def load_rows(self, conn: Connection, schema: str | None, table: str, columns: Sequence[str],
                  key_columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> bool:
        """``upsert_rows`` for a large batch whose keys are distinct (a caller guarantee), e.g. a bootstrap's.

        Where the database has a faster plain load, it is tried first and the upsert is the fallback
        (same result: with distinct keys, inserting succeeds exactly when no key exists yet). Returns
        True when the plain load took every row, False when the rows were upserted (keys existed: the
        caller may skip the attempt next time). Default: the upsert. Does not commit."""
        self.upsert_rows(conn, schema, table, columns, key_columns, rows)
        return False

    def _upsert_action(self, columns: Sequence[str], key_columns: Sequence[str]) -> str:
        """The ``ON CONFLICT`` action of an upsert (PostgreSQL, SQLite): the non-key columns take the
        conflicting row's values (``DO NOTHING`` when every column is a key)."""
        q = self.quote_ident
        others = [c for c in columns if c not in key_columns]
        return "DO UPDATE SET " + ", ".join(f"{q(c)} = EXCLUDED.{q(c)}" for c in others) if others else "DO NOTHING"

    @abstractmethod
    def delete_rows(self, conn: Connection, schema: str | None, table: str, key_columns: Sequence[str],
                    keys: Iterable[Sequence[Any]]) -> int:
        """Delete the rows with these keys (missing keys are fine). Returns the count deleted."""

    @abstractmethod
    def insert_ignore_existing(self, conn: Connection, schema: str | None, table: str, columns: Sequence[str],
                               key_columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
        """Insert rows whose key does not exist yet; existing rows are left untouched.

        When a key occurs more than once in ``rows`` the first row wins. Returns the count inserted.
        """

    # -- resume state --------------------------------------------------------------------
    def ensure_state_table(self, conn: Connection) -> None:
        """Create ``cdx_state(namespace, key, value)`` (schema ``cdx`` where schemas exist)."""
        self.ensure_schema(conn, KERNEL_SCHEMA)
        q = self.quote_ident
        conn.execute(self._create_table_sql(
            self.kernel_table(STATE_TABLE),
            f"{q('namespace')} {self._state_text(128)} NOT NULL, {q('key')} {self._state_text(256)} NOT NULL,"
            f" {q('value')} {self._state_text(None)} NOT NULL, PRIMARY KEY ({q('namespace')}, {q('key')})"))

    def _create_table_sql(self, qualified: str, body: str) -> str:
        return f"CREATE TABLE IF NOT EXISTS {qualified} ({body})"

    def _state_text(self, length: int | None) -> str:
        return "text"

    def read_state(self, conn: Connection, namespace: str) -> dict[str, str]:
        """All ``key -> value`` of ``namespace`` (empty if none), read in the caller's transaction."""
        q, p = self.quote_ident, self.placeholder
        cur = conn.cursor()
        cur.execute(f"SELECT {q('key')}, {q('value')} FROM {self.kernel_table(STATE_TABLE)}"
                    f" WHERE {q('namespace')} = {p}", (namespace,))
        return {str(k): str(v) for k, v in cur.fetchall()}

    def write_state(self, conn: Connection, namespace: str, items: dict[str, str]) -> None:
        """Upsert ``items`` into ``namespace`` in the caller's transaction (does not commit)."""
        if not items:
            return
        q, p = self.quote_ident, self.placeholder
        rows = list(items.items())
        cur = conn.cursor()
        for start in range(0, len(rows), 300):  # one statement per 300 keys (a batch's few: one round trip)
            part = rows[start:start + 300]
            values = ", ".join([f"({p}, {p}, {p})"] * len(part))
            cur.execute(f"INSERT INTO {self.kernel_table(STATE_TABLE)} ({q('namespace')}, {q('key')}, {q('value')})"
                        f" VALUES {values} ON CONFLICT ({q('namespace')}, {q('key')})"
                        f" DO UPDATE SET {q('value')} = excluded.{q('value')}",
                        [x for k, v in part for x in (namespace, k, v)])

    # -- one writer per database ---------------------------------------------------------
    session_locks: ClassVar[bool] = False
    """True: ``try_session_lock`` takes a lock the server holds for as long as the connection lives
    (PostgreSQL advisory lock, SQL Server ``sp_getapplock``); False (SQLite): the caller keeps a
    lease row in ``cdx_state`` instead (see ``cdx.connectors.sink.lock``)."""

    def try_session_lock(self, conn: Connection, name: str) -> bool:
        """Take the exclusive session lock ``name`` without waiting (commits); False if another
        connection holds it. Only where ``session_locks``."""
        raise NotImplementedError(f"{self.name} has no session locks")

    def release_session_lock(self, conn: Connection, name: str) -> None:
        """Release ``name`` taken by ``try_session_lock`` on this connection (commits)."""
        raise NotImplementedError(f"{self.name} has no session locks")

    # -- errors ------------------------------------------------------------------------
    def classify_error(self, exc: BaseException) -> type[CdxError]:
        """``RetriableError`` (connection lost/unreachable, deadlock, serialization failure,
        lock timeout), ``SkippableError`` (constraint violation, type mismatch, bad data) or
        ``FatalError`` (anything else: bugs, missing objects, permissions)."""
        if isinstance(exc, CdxError):
            return cdx_category(exc)
        return self._classify(exc) or FatalError

    @abstractmethod
    def _classify(self, exc: BaseException) -> type[CdxError] | None:
        """The category of a driver error of this dialect, or None when not this driver's."""


def cdx_category(exc: CdxError) -> type[CdxError]:
    for category in (RetriableError, SkippableError):
        if isinstance(exc, category):
            return category
    return FatalError


def _check_keys(columns: Sequence[str], key_columns: Sequence[str], where: str) -> None:
    if not key_columns:
        raise no_primary_key(None, where)
    missing = [k for k in key_columns if k not in columns]
    if missing:
        raise ConfigError(f"table {where}: key columns {missing} are not among the columns {list(columns)}")


def bulk_rows(schema: str | None, table: str, columns: Sequence[str], key_columns: Sequence[str],
              rows: Iterable[Sequence[Any]]) -> list[Sequence[Any]]:
    """The rows of a bulk call on ``schema.table``, materialised: ``ConfigError`` when the key columns are not
    among ``columns``, ``ValueError`` (a caller bug) when a row's width is not ``len(columns)``."""
    where = display_name(schema, table)
    _check_keys(columns, key_columns, where)
    out = list(rows)
    for row in out:
        if len(row) != len(columns):
            raise ValueError(f"{where}: a row has {len(row)} values, expected {len(columns)}: {row!r}")
    return out


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
