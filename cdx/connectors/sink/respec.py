"""Row filters a channel database was written under, and what a sink does when they change. Idempotent.

A sink filters rows itself (``plan``: a ``FilterRule`` per subjob, from the subjob's
``channel_filter`` and the channel's attribute); its group topic holds every row of the group. So
when the rule of any subjob changes, the rows the database holds must be evaluated again: rows that
now pass must come in, rows that no longer do must go. The group topic is compacted and holds the
latest change of every key, so a **resync** (``resync``: rebuild from the compacted topic, in one
transaction) does exactly that; nothing needs HQ.

The rules the database was last made consistent with are kept in it (state key ``filters`` of the
sink's namespace, JSON), so the check does not depend on the process that saw the change: a sink
that opens the database (start, restart with a new topology revision, recovery) compares them with
its spec (``filter_change``) and resyncs when they differ, then stores its own (``remember``). A
crash before ``remember`` resyncs again at the next open (a resync is idempotent). A database
without the key (written before it existed) takes the current rules as they are.
"""

from __future__ import annotations

import json

from cdx.connectors.sink.spec import FilterRule, SinkSpec
from cdx.dialects import Connection, Dialect

FILTERS_KEY = "filters"


def filters_text(spec: SinkSpec) -> str:
    """The spec's row filters as stored: ``{"<subjob>": ["<column>", "<value>"]}`` (JSON, sorted)."""
    return json.dumps({s: [r.column, r.value] for s, r in sorted(spec.filters.items())}, sort_keys=True)


def _rules(text: str) -> dict[str, FilterRule]:
    try:
        return {s: FilterRule(str(c), str(v)) for s, (c, v) in json.loads(text).items()}
    except (ValueError, TypeError):
        return {}


def describe_change(old: dict[str, FilterRule], new: dict[str, FilterRule]) -> str | None:
    """``row filter changed (<subjob>: <before> -> <after>; ...)``, or None when equal."""
    changed = sorted(s for s in set(old) | set(new) if old.get(s) != new.get(s))
    if not changed:
        return None
    return "row filter changed (" + "; ".join(f"{s}: {_text(old.get(s))} -> {_text(new.get(s))}" for s in changed) + ")"


def _text(rule: FilterRule | None) -> str:
    return f"{rule.column} = {rule.value!r}" if rule else "none"


def filter_change(conn: Connection, dialect: Dialect, namespace: str, spec: SinkSpec) -> str | None:
    """Why the database must be resynced for ``spec``'s row filters (in the caller's transaction), or None.
    A database that never stored its filters stores the spec's now and needs nothing."""
    stored = dialect.read_state(conn, namespace).get(FILTERS_KEY)
    if stored is None:
        dialect.write_state(conn, namespace, {FILTERS_KEY: filters_text(spec)})
        return None
    if stored == filters_text(spec):
        return None
    return describe_change(_rules(stored), dict(spec.filters))


def remember(conn: Connection, dialect: Dialect, namespace: str, spec: SinkSpec) -> None:
    """Store the spec's row filters as those the database is consistent with (in the caller's transaction)."""
    dialect.write_state(conn, namespace, {FILTERS_KEY: filters_text(spec)})
