"""Kafka topic names used by cdx; every component builds names through these functions.

=========================================  ===================================================
``<prefix>.<database>.<schema>.<table>``   change stream of one HQ table (Debezium naming)
``<prefix>.group.<group-id>``              download rows routed to one channel data group
``<prefix>.upload.<channel-id>``           rows uploaded from one channel
``<prefix>._schemas``                      schema history (compacted)
``<prefix>._capture_positions``            capture positions / offsets (compacted)
``<prefix>._dlq``                          dead-letter records
=========================================  ===================================================

Every function raises ``ValueError`` if a component (or the result) is not a legal Kafka
topic name: characters ``[A-Za-z0-9._-]``, at most 249 characters, not ``.``/``..``.
"""

from __future__ import annotations

import re

MAX_TOPIC_LENGTH = 249
_LEGAL = re.compile(r"^[A-Za-z0-9._-]+$")


def check_topic_part(part: str, what: str = "topic name component") -> str:
    """Return ``part`` if it may appear in a topic name, else raise ``ValueError``."""
    if not part or part in (".", "..") or not _LEGAL.match(part):
        raise ValueError(f"{what} {part!r} is not legal in a Kafka topic name: use [A-Za-z0-9._-]")
    return part


def check_topic(name: str) -> str:
    """Return ``name`` if it is a legal Kafka topic name, else raise ``ValueError``."""
    check_topic_part(name, "topic name")
    if len(name) > MAX_TOPIC_LENGTH:
        raise ValueError(f"topic name {name[:40]!r}... is {len(name)} characters; Kafka allows {MAX_TOPIC_LENGTH}")
    return name


def collision_key(name: str) -> str:
    """Kafka treats ``.`` and ``_`` alike in metric names: topics equal under this key collide."""
    return name.replace(".", "_")


def _join(*parts: str) -> str:
    for part in parts:
        check_topic_part(part)
    return check_topic(".".join(parts))


def table_topic(prefix: str, database: str, schema: str | None, table: str) -> str:
    """``<prefix>.<database>.<schema>.<table>``; ``schema`` defaults to ``public``."""
    return _join(prefix, database, schema or "public", table)


def group_topic(prefix: str, group_id: str) -> str:
    """``<prefix>.group.<group-id>``."""
    return _join(prefix, "group", group_id)


def upload_topic(prefix: str, channel_id: str) -> str:
    """``<prefix>.upload.<channel-id>``."""
    return _join(prefix, "upload", channel_id)


def schemas_topic(prefix: str) -> str:
    """``<prefix>._schemas``."""
    return _join(prefix, "_schemas")


def positions_topic(prefix: str) -> str:
    """``<prefix>._capture_positions``."""
    return _join(prefix, "_capture_positions")


def dlq_topic(prefix: str) -> str:
    """``<prefix>._dlq``."""
    return _join(prefix, "_dlq")


def upload_positions_topic(prefix: str) -> str:
    """``<prefix>._upload_positions``: the channel uploads' read positions (compacted)."""
    return _join(prefix, "_upload_positions")


def dlq_acks_topic(prefix: str) -> str:
    """``<prefix>._dlq_acks``: dead letters an operator dealt with (compacted)."""
    return _join(prefix, "_dlq_acks")


def router_state_topic(prefix: str) -> str:
    """``<prefix>._router_state``: the router's routing state (compacted)."""
    return _join(prefix, "_router_state")


def router_keys_topic(prefix: str) -> str:
    """``<prefix>._router_keys``: the router's per-key state changelog (compacted)."""
    return _join(prefix, "_router_keys")


def router_progress_topic(prefix: str) -> str:
    """``<prefix>._router_progress``: the router's per-partition progress (compacted)."""
    return _join(prefix, "_router_progress")


def lease_topic(prefix: str) -> str:
    """``<prefix>._leases``: one partition, never written; its consumer groups elect the active capture
    and channel uploads (``cdx.kafka.lease``)."""
    return _join(prefix, "_leases")
