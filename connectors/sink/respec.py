"""What a sink must do when its spec changes under a topology reload (pure).

A sink filters rows itself (``plan``: ``FilterRule`` per subjob, from the subjob's
``channel_filter`` and the channel's attribute); its group topic holds every row of the group. So
when the rule of any subjob changes, the rows the database holds must be evaluated again: rows that
now pass must come in, rows that no longer do must go. The group topic is compacted and holds the
latest change of every key, so a resync (``resync``: rebuild from the compacted topic, in one
transaction) does exactly that; nothing needs HQ.
"""

from __future__ import annotations

from connectors.sink.spec import SinkSpec


def resync_reason_for(old: SinkSpec, new: SinkSpec) -> str | None:
    """Why ``new`` needs the database re-evaluated against its group topic, or None."""
    changed = sorted(s for s in set(old.filters) | set(new.filters) if old.filters.get(s) != new.filters.get(s))
    if not changed:
        return None
    parts = []
    for s in changed:
        a, b = old.filters.get(s), new.filters.get(s)
        before = f"{a.column} = {a.value!r}" if a else "none"
        after = f"{b.column} = {b.value!r}" if b else "none"
        parts.append(f"{s}: {before} -> {after}")
    return "row filter changed (" + "; ".join(parts) + ")"
