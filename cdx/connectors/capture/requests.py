"""Operator requests to the capture, kept in the HQ database: ``cdx capture resnapshot --table T``.

Layout: HQ's ``cdx_state`` (``Dialect.ensure_state_table``), namespace ``cdx-capture``, key
``resnapshot:<schema.table>`` (case-folded), value ``<UTC ISO time> <request id>``. The capture reads them
(read-only) at most every few seconds between two transactions; for each it starts a re-snapshot of the
table (chunks published with their progress in the positions topic, as for any snapshot: resumable) and
then deletes the request if it still holds the same value (a newer request is kept). A capture whose HQ
user cannot delete it remembers the request id instead (a restart then re-snapshots once more: harmless,
a re-snapshot is idempotent). Functions run and end their own transaction unless noted.
"""

from __future__ import annotations

import datetime as dt
import uuid

from cdx.controls import state_table_exists
from cdx.dialects import Connection, Dialect
from cdx.dialects.base import STATE_TABLE

NAMESPACE = "cdx-capture"
RESNAPSHOT = "resnapshot:"


def request_resnapshot(conn: Connection, dialect: Dialect, table: str) -> str:
    """Ask the capture to re-snapshot ``table`` (``schema.table``); returns the request's value."""
    value = f"{dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()} {uuid.uuid4().hex[:12]}"
    with dialect.transaction(conn):
        dialect.ensure_state_table(conn)
        dialect.write_state(conn, NAMESPACE, {RESNAPSHOT + table.casefold(): value})
    return value


def pending(conn: Connection, dialect: Dialect) -> dict[str, str]:
    """Table (case-folded ``schema.table``) -> request value, of every open re-snapshot request."""
    try:
        if not state_table_exists(conn, dialect):
            return {}
        items = dialect.read_state(conn, NAMESPACE)
    finally:
        conn.rollback()
    return {k[len(RESNAPSHOT):]: v for k, v in items.items() if k.startswith(RESNAPSHOT)}


def done(conn: Connection, dialect: Dialect, table: str, value: str) -> None:
    """Delete the request of ``table`` if it still holds ``value``."""
    q, p = dialect.quote_ident, dialect.placeholder
    with dialect.transaction(conn):
        conn.cursor().execute(f"DELETE FROM {dialect.kernel_table(STATE_TABLE)} WHERE {q('namespace')} = {p}"
                              f" AND {q('key')} = {p} AND {q('value')} = {p}",
                              (NAMESPACE, RESNAPSHOT + table.casefold(), value))
