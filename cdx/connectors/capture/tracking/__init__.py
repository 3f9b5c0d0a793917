"""HQ change tracking with SQL Server Change Tracking semantics on every dialect.

``tracker_for(conn)`` returns the ``ChangeTracker`` for a connection opened with
``cdx.dialects.connect``; ``open_tracker(dialect, dsn)`` opens a dedicated one.
See ``cdx.connectors.capture.tracking.base`` for the contract.
"""

from __future__ import annotations

from typing import Any

from cdx.connectors.capture.tracking.base import (
    DEFAULT_RETENTION,
    Change,
    ChangeTracker,
    ResyncRequired,
    TableRef,
)
from cdx.dialects import connect, dialect_of, get_dialect

__all__ = [
    "DEFAULT_RETENTION", "Change", "ChangeTracker", "ResyncRequired", "TableRef", "open_tracker",
    "tracker_for",
]


def tracker_for(conn: Any, dialect: str | None = None) -> ChangeTracker:
    """The change tracker for ``conn`` (which it then owns; see ``ChangeTracker``)."""
    name = get_dialect(dialect).name if dialect else dialect_of(conn).name
    if name == "postgresql":
        from cdx.connectors.capture.tracking.postgresql import PostgresChangeTracker

        return PostgresChangeTracker(conn)
    if name == "sqlite":
        from cdx.connectors.capture.tracking.sqlite import SQLiteChangeTracker

        return SQLiteChangeTracker(conn)
    from cdx.connectors.capture.tracking.sqlserver import SQLServerChangeTracker

    return SQLServerChangeTracker(conn)


def open_tracker(dialect: str, dsn: str) -> ChangeTracker:
    """Open a dedicated connection to ``dsn`` and return its tracker."""
    return tracker_for(connect(dialect, dsn), dialect)
