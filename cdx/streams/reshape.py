"""What a group receives of one table topic, as a comparable **shape**; when a topology change needs a re-route.

The router routes each source partition to a group under the group's shape of that table:

- ``cols``: the channel columns it writes, ``<schema>.<table>.<column>`` (case-folded, sorted), own
  table and extension table (the subjob's fields under their channel names, ``to_name``);
- ``scope``: a digest of which rows the group takes and where they go: the group's legal entities,
  the subjob's target tables, its HQ table, its channel-filter column (the router sends that column's
  value with every change) and the extension key.

The shape each (group, topic, partition) was last routed under is kept with its progress
(``cdx.streams.progress``). When a reload (or a restart) brings another shape, the existing rows of the
table must be re-evaluated, which the live stream alone never does (rows that do not change at HQ
are never routed again): :func:`reroute_needed` says when, and the activation **re-routes** the
partition from the beginning of its compacted table topic to that group (``cdx.streams.activation``).

- a column added (a new field, or a field renamed with ``to_name``): re-route, so existing rows get
  the new column's value from the table topic (capture publishes every HQ column);
- scope changed (legal entities added or removed, another filter column, other target tables):
  re-route, so rows move in and out (the key state sends deletes for rows that leave the group);
- only columns removed: no re-route (nothing to fill; the channel column is left as it is);
- no shape recorded (progress written before shapes existed): the current shape is adopted as is.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from cdx.topology import Subjob, Topology

Shape = dict[str, Any]
"""``{"cols": [...], "scope": "<hex>"}``, plus ``gen`` (re-routes so far) and, while a re-route runs,
``rr`` (source offsets below it are re-routed) once stored with the progress."""


def _table(ref: Any) -> str:
    return f"{ref.schema or ''}.{ref.name}".casefold()


def group_shape(topology: Topology, subjob: Subjob, group_id: str) -> Shape:
    """The shape of ``subjob``'s table topic for group ``group_id`` under ``topology``."""
    own = _table(subjob.target)
    cols = [f"{own}.{ch.casefold()}" for _hq, ch in subjob.channel_columns()]
    ext = subjob.extension
    if ext is not None:
        et = _table(ext.target)
        cols += [f"{et}.{ch.casefold()}" for _hq, ch in ext.channel_columns()]
    group = topology.group(group_id)
    entities = sorted({e.strip().casefold() for e in group.legal_entities}) if group is not None else []
    flt = subjob.channel_filter
    scope = {"entities": entities, "hq": _table(subjob.hq_table), "target": own,
             "extension": _table(ext.target) if ext is not None else None,
             "extension_key": sorted(k.casefold() for k in ext.key) if ext is not None else [],
             "filter": flt.column.casefold() if flt is not None else None}
    digest = hashlib.sha256(json.dumps(scope, sort_keys=True).encode()).hexdigest()[:16]
    return {"cols": sorted(set(cols)), "scope": digest}


def same_shape(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> bool:
    """Equal columns and scope (``gen`` and ``rr`` are bookkeeping, not shape)."""
    if a is None or b is None:
        return a is b
    return list(a.get("cols", ())) == list(b.get("cols", ())) and a.get("scope") == b.get("scope")


def reroute_needed(routed: Mapping[str, Any] | None, wanted: Mapping[str, Any]) -> bool:
    """True when rows routed under ``routed`` must be routed again for ``wanted`` (module docstring)."""
    if routed is None:
        return False
    if "rr" in routed:  # a re-route was under way: go on with it (same shape) or start over (another one)
        return True
    if routed.get("scope") != wanted.get("scope"):
        return True
    return bool(set(wanted.get("cols", ())) - set(routed.get("cols", ())))


def describe(routed: Mapping[str, Any], wanted: Mapping[str, Any]) -> str:
    """Why a re-route runs, for the log."""
    if routed.get("scope") != wanted.get("scope"):
        return "rows in scope changed (legal entities, filter column or target tables)"
    added = sorted(set(wanted.get("cols", ())) - set(routed.get("cols", ())))
    return f"columns added: {', '.join(added)}" if added else "a re-route was under way"
