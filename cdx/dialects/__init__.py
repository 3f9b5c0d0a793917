"""Database dialects: one explicit capability object per database.

``get_dialect("sqlite" | "postgresql" | "sqlserver")`` returns the ``Dialect``;
``connect(name, dsn)`` opens a connection with it. See ``cdx.dialects.base`` for the
contract every dialect fulfils and ``cdx.dialects.types`` for the logical types.
"""

from __future__ import annotations

from typing import Any

from cdx.dialects.base import Connection, Dialect, cdx_category, display_name, validate_identifier
from cdx.dialects.postgresql import PostgreSQLDialect
from cdx.dialects.sqlite import SQLiteDialect
from cdx.dialects.sqlserver import SQLServerDialect
from cdx.dialects.types import ColumnInfo, LogicalType, key_columns
from cdx.errors import CdxError, ConfigError, FatalError

__all__ = [
    "ColumnInfo", "Connection", "Dialect", "LogicalType", "classify_error", "connect", "dialect_of",
    "display_name", "get_dialect", "key_columns", "validate_identifier",
]

_DIALECTS: dict[str, Dialect] = {d.name: d for d in (SQLiteDialect(), PostgreSQLDialect(), SQLServerDialect())}
_ALIASES = {"sqlite3": "sqlite", "postgres": "postgresql", "pg": "postgresql", "mssql": "sqlserver",
            "sql_server": "sqlserver"}


def get_dialect(name: str) -> Dialect:
    """The dialect called ``name`` (case-insensitive; aliases: sqlite3, postgres, pg, mssql)."""
    key = str(name).strip().lower()
    dialect = _DIALECTS.get(_ALIASES.get(key, key))
    if dialect is None:
        raise ConfigError(f"unknown database dialect {name!r}; use one of {sorted(_DIALECTS)}")
    return dialect


def connect(dialect_name: str, dsn: str) -> Connection:
    """Open a connection to ``dsn`` with the named dialect (not in autocommit)."""
    return get_dialect(dialect_name).connect(dsn)


def dialect_of(conn: Any) -> Dialect:
    """The dialect of a connection opened by one of the supported drivers."""
    module = type(conn).__module__.split(".")[0]
    name = {"sqlite3": "sqlite", "psycopg": "postgresql", "pyodbc": "sqlserver"}.get(module)
    if name is None:
        raise ConfigError(f"no cdx dialect for connections of type {type(conn).__module__}.{type(conn).__name__}")
    return _DIALECTS[name]


def classify_error(exc: BaseException) -> type[CdxError]:
    """``RetriableError``, ``SkippableError`` or ``FatalError`` for any exception (see ``Dialect.classify_error``)."""
    if isinstance(exc, CdxError):
        return cdx_category(exc)
    for dialect in _DIALECTS.values():
        category = dialect._classify(exc)
        if category is not None:
            return category
    return FatalError
