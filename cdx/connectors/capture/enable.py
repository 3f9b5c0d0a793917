"""Change tracking for the HQ tables a topology adds: the step a topology change runs before capture reloads.

``untracked_tables(tracker, tables)`` names the tables change tracking does not cover yet;
``enable_new_tables(topology)`` enables it on exactly those (idempotent: a second run finds none
and touches nothing). Unlike enabling every table again (``cdx hq enable-tracking``, which
re-installs PostgreSQL's and SQLite's triggers), it runs no DDL on tables already tracked, so it
is safe while HQ applications write to them (re-installing triggers on busy tables can deadlock
their writers). Capture snapshots a table that has no position yet when it next starts or reloads
(``cdx.connectors.capture.connector``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from cdx.connectors.capture.tables import capture_tables
from cdx.connectors.capture.tracking import DEFAULT_RETENTION, ChangeTracker, TableRef, open_tracker
from cdx.errors import ConfigError
from cdx.topology.root import Topology


def untracked_tables(tracker: ChangeTracker, tables: Iterable[TableRef]) -> list[TableRef]:
    """The ``tables`` change tracking does not cover (a missing table is one: enabling it says so)."""
    out = []
    for ref in tables:
        try:
            tracker.min_valid_version(ref)
        except ConfigError:
            out.append(ref)
    return out


def enable_new_tables(topology: Topology, retention: timedelta = DEFAULT_RETENTION) -> list[TableRef]:
    """Enable change tracking on the topology's HQ tables that lack it; returns them (empty: nothing done).
    When there are any, ``retention`` becomes the database's tracking retention, as with
    ``cdx hq enable-tracking --retention-days``."""
    tracker = open_tracker(topology.hq.dialect, topology.hq.dsn)
    try:
        new = untracked_tables(tracker, [t.ref for t in capture_tables(topology)])
        if new:
            tracker.enable(new, retention)
        return new
    finally:
        tracker.conn.close()
