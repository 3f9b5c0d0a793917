"""Operator controls kept in a channel (or offline-register) database: pause and schedule releases.

Layout: the database's ``cdx_state`` table (``Dialect.ensure_state_table``), namespace
``cdx-controls``. Every role that writes to or reads from the database (its sink, the channel
upload, ``cdx status``) reads them there, so a control set by one process on one host reaches the
others, and survives restarts, without any other channel between them.

=========================  ===========================================================================
key                        value
=========================  ===========================================================================
``paused``                 ``<UTC ISO time> <who>``: set by ``cdx channel pause``, deleted by ``resume``
``release:<schedule id>``  ``<partition>:<offset>[,...]``: records of that distribution schedule below
                           these group-topic offsets may be applied outside its windows
                           (``cdx schedule run-now``; an interval schedule's ticks). Only ever raised.
``tick:<schedule id>``     the last interval tick a sink released (an interval schedule)
=========================  ===========================================================================

Every function runs in the caller's transaction (never commits) unless it says otherwise.
"""

from __future__ import annotations

import datetime as dt
import getpass
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field

from cdx.dialects import Connection, Dialect
from cdx.dialects.base import KERNEL_SCHEMA, STATE_TABLE

NAMESPACE = "cdx-controls"
PAUSED = "paused"
RELEASE = "release:"
TICK = "tick:"


@dataclass(frozen=True)
class Controls:
    """The controls of one database as read at one moment."""

    paused: str | None = None
    """``<time> <who>`` while paused, else ``None``."""
    releases: Mapping[str, Mapping[int, int]] = field(default_factory=dict)
    """Schedule id (case-folded) -> partition -> offset below which its records are released."""
    ticks: Mapping[str, int] = field(default_factory=dict)

    def released(self, schedule: str, partition: int, offset: int) -> bool:
        """Whether a held-back record of ``schedule`` at ``offset`` was released (run-now or a tick)."""
        return offset < self.releases.get(schedule.casefold(), {}).get(partition, 0)


def state_table_exists(conn: Connection, dialect: Dialect) -> bool:
    want = dialect.kernel_table(STATE_TABLE)
    ref = next((r for r in ((KERNEL_SCHEMA, STATE_TABLE), (None, STATE_TABLE)) if dialect.qualified(*r) == want),
               (KERNEL_SCHEMA, STATE_TABLE))
    return dialect.table_exists(conn, *ref)


def read(conn: Connection, dialect: Dialect, *, table_known: bool = False) -> Controls:
    """The controls (none when the state table does not exist yet; ``table_known``: the caller made sure
    it does, as a running sink has, so it is not looked up again)."""
    if not table_known and not state_table_exists(conn, dialect):
        return Controls()
    items = dialect.read_state(conn, NAMESPACE)
    releases: dict[str, dict[int, int]] = {}
    ticks: dict[str, int] = {}
    for key, value in items.items():
        if key.startswith(RELEASE):
            releases[key[len(RELEASE):].casefold()] = decode_offsets(value)
        elif key.startswith(TICK) and value.strip().lstrip("-").isdigit():
            ticks[key[len(TICK):].casefold()] = int(value)
    return Controls(items.get(PAUSED), releases, ticks)


def decode_offsets(text: str) -> dict[int, int]:
    out: dict[int, int] = {}
    for part in text.split(","):
        p, _, o = part.strip().partition(":")
        if p.strip().isdigit() and o.strip().lstrip("-").isdigit():
            out[int(p)] = int(o)
    return out


def encode_offsets(offsets: Mapping[int, int]) -> str:
    return ",".join(f"{p}:{o}" for p, o in sorted(offsets.items()))


def set_paused(conn: Connection, dialect: Dialect, paused: bool) -> None:
    """Pause (recording when and by whom) or resume. Idempotent; a second pause keeps the first time."""
    dialect.ensure_state_table(conn)
    current = dialect.read_state(conn, NAMESPACE).get(PAUSED)
    if paused and current is None:
        now = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
        dialect.write_state(conn, NAMESPACE, {PAUSED: f"{now} {getpass.getuser()}@{socket.gethostname()}"})
    elif not paused and current is not None:
        q, p = dialect.quote_ident, dialect.placeholder
        conn.cursor().execute(f"DELETE FROM {dialect.kernel_table(STATE_TABLE)} WHERE {q('namespace')} = {p}"
                              f" AND {q('key')} = {p}", (NAMESPACE, PAUSED))


def raise_release(conn: Connection, dialect: Dialect, schedule: str, offsets: Mapping[int, int],
                  tick: int | None = None) -> dict[int, int]:
    """Release a schedule's records below ``offsets`` (merged with any earlier release: never lowered);
    with ``tick``, also record it as the last interval tick released. Returns the release now stored."""
    dialect.ensure_state_table(conn)
    key = RELEASE + schedule.casefold()
    merged = decode_offsets(dialect.read_state(conn, NAMESPACE).get(key, ""))
    for p, o in offsets.items():
        merged[p] = max(merged.get(p, 0), o)
    items = {key: encode_offsets(merged)}
    if tick is not None:
        items[TICK + schedule.casefold()] = str(tick)
    dialect.write_state(conn, NAMESPACE, items)
    return merged
