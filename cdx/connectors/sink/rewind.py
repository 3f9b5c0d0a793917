"""``cdx replay``: rewind one database to an earlier position of its group topic, to apply again.

Where to: ``--from-offset N`` (every partition, or those named, at N), ``--from-timestamp T``
(per partition the first record written at or after T: ``offsets_for_times``) or
``--from-beginning`` (the earliest offsets). A target is never below the earliest offset nor
above the stored offset (a rewind never skips anything forward).

What is written, in one transaction of the channel database:

- the offsets of the rewound partitions (the sink positions itself there when it starts);
- the **watermarks of those partitions are deleted**, the live ones (``wm:``) and the re-route ones
  (``rr:``), so the records read again, re-routed ones included, are applied (as idempotent upserts
  and deletes) instead of being skipped as re-sends;
- the dead-letter replay markers of the rewound offsets are deleted (those records are read
  again, and may be dead-lettered again);
- a ``rewind`` download session (offsets: target .. previous stored offset - 1).

Why the final state is identical to never having replayed: the database already reflects every
record before the stored offset S. Re-applying the records from the target T to the end in
offset order (per partition, and every key lives in one partition) leaves each key the value of
its **last** record at or after T, which is the value it already had; keys without a record
after T are not touched. Router re-sends in that range are harmless too: the router re-sends
from a committed source offset onwards, in source order, so a re-sent older change of a key is
always followed by the newer changes of that key; rebuilding the watermarks from T skips the
same re-sends as the first time or applies an older version that the following newer one
overwrites. While the replay runs the channel shows older versions of the keys concerned; once
caught up it is identical.

A sink for the database must not run meanwhile (it would overwrite the rewound offsets with its
own position): ``ensure_sink_stopped`` refuses while it holds the channel lock (or, for older sinks, while its
consumer group has a member).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from cdx.cleanup import quietly
from cdx.connectors.sink.letters import load_markers, marker_key, marker_namespace
from cdx.connectors.sink.lock import held_text, live_holder, take_or_refuse
from cdx.connectors.sink.sessions import REWIND, Session, SessionLog
from cdx.connectors.sink.spec import SinkSpec
from cdx.connectors.sink.state import StateStore
from cdx.connectors.sink.tools import SinkTools, open_database
from cdx.dialects import Connection, Dialect, get_dialect
from cdx.dialects.base import STATE_TABLE
from cdx.dialects.reach import missing_sqlite_file
from cdx.errors import ConfigError, FatalError, RetriableError
from cdx.kafka.rewind import group_members, replay_targets
from cdx.stage.sessions import utcnow

log = logging.getLogger("cdx.sink")


def ensure_sink_stopped(tools: SinkTools, spec: SinkSpec, wait: float = 0.0) -> None:
    """Raise ``FatalError`` if the sink of ``spec`` is running (it holds the channel lock in its database,
    or its consumer group has a member), after waiting up to ``wait`` seconds for a just-stopped sink."""
    deadline = time.monotonic() + wait
    while (holder := _lock_holder(spec)) is not None and time.monotonic() < deadline:
        time.sleep(0.5)
    if holder is not None:
        raise FatalError(f"channel {spec.owner_id}: another process is applying to this channel database"
                         f" ({held_text(holder)}), the sink of {spec.owner_id} is running; stop it first")
    members = group_members(tools.config, spec.consumer_group, max(0.0, deadline - time.monotonic()))
    if members:
        raise FatalError(
            f"the sink of {spec.owner_id} is running (consumer group {spec.consumer_group}: {', '.join(members)});"
            " stop it first (a stopped sink stays a group member for its session timeout, 10 s: pass --wait to wait"
            " for it)")


def _lock_holder(spec: SinkSpec) -> dict[str, Any] | None:
    """The live holder of the channel lock (None also when the database cannot be opened: the command
    that needs it says so next, and when a SQLite database does not exist yet: opening it would create it)."""
    if missing_sqlite_file(spec.dialect, spec.dsn) is not None:
        return None
    try:
        conn = open_database(spec)
    except RetriableError:
        return None
    try:
        return live_holder(get_dialect(spec.dialect), conn, spec.consumer_group)
    finally:
        quietly(conn.rollback, "replay: rolling back a read", log)
        quietly(conn.close, "replay: closing a connection", log)


@dataclass
class RewindResult:
    moved: dict[int, tuple[int, int]] = field(default_factory=dict)
    """partition -> (old stored offset, new offset) for the partitions rewound."""
    markers_removed: int = 0

    @property
    def records(self) -> int:
        """Offsets to read again (compaction may have removed some records in between)."""
        return sum(old - new for old, new in self.moved.values())


def parse_timestamp(text: str) -> int:
    """Milliseconds since the epoch from ``1718000000000`` (ms), ``1718000000`` (s) or ISO 8601
    (``2024-06-10T08:00:00``, naive = UTC; ``...+02:00`` honoured)."""
    raw = text.strip()
    if raw.lstrip("-").isdigit():
        n = int(raw)
        return n if abs(n) >= 10**11 else n * 1000
    try:
        when = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as e:
        raise ConfigError(f"--from-timestamp {text!r}: use ISO 8601 (2024-06-10T08:00:00, UTC unless an offset"
                          " is given) or milliseconds since the epoch") from e
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp() * 1000)


def rewind(tools: SinkTools, spec: SinkSpec, *, from_offset: int | None = None, from_timestamp_ms: int | None = None,
           from_beginning: bool = False, partitions: Iterable[int] | None = None) -> RewindResult:
    """Rewind ``spec``'s database (see module docstring). The caller checks the sink is stopped."""
    if sum((from_offset is not None, from_timestamp_ms is not None, from_beginning)) != 1:
        raise ConfigError("give exactly one of --from-offset, --from-timestamp, --from-beginning")
    wanted, _ = replay_targets(tools.config, spec.topic, from_offset=0 if from_beginning else from_offset,
                               from_timestamp_ms=from_timestamp_ms, partitions=partitions)  # clamped to the log
    if missing_sqlite_file(spec.dialect, spec.dsn) is not None:
        return RewindResult()  # never read: its sink starts from the beginning anyway (and it is not created here)
    dialect = get_dialect(spec.dialect)
    store = StateStore(dialect, spec.topic)
    sessions = SessionLog(dialect, spec.owner_id)
    conn = open_database(spec)
    try:
        with dialect.transaction(conn):
            store.ensure(conn)
        lock = take_or_refuse(dialect, conn, spec.consumer_group, spec.owner_id, "cdx replay")
        with dialect.transaction(conn):
            lock.confirm(conn)
            sessions.ensure(conn)
            stored = store.load(conn).offsets
            result = RewindResult()
            for p, target in sorted(wanted.items()):
                if p not in stored:
                    continue  # never read: it starts from the beginning anyway
                new = min(target, stored[p])
                if new < stored[p]:
                    result.moved[p] = (stored[p], new)
            if result.moved:
                how = _how(from_offset, from_timestamp_ms, from_beginning)
                sessions.record(conn, _move_back(conn, dialect, store, spec, result, how))
        lock.release(conn)
    finally:
        conn.close()
    if result.moved:
        log.info("replay: %s rewound %s", spec.owner_id, result.moved)
    return result


def _how(from_offset: int | None, from_timestamp_ms: int | None, from_beginning: bool) -> str:
    """Where the rewind starts, in words (for the session)."""
    when = dt.datetime.fromtimestamp((from_timestamp_ms or 0) / 1000, dt.UTC).isoformat()
    return ("from the beginning" if from_beginning else f"from offset {from_offset}"
            if from_offset is not None else f"from {when}")


def _move_back(conn: Connection, dialect: Dialect, store: StateStore, spec: SinkSpec, result: RewindResult,
               how: str) -> Session:
    """In the caller's transaction: store the earlier offsets of ``result.moved``, drop their watermarks and
    the replay markers at or after them, and count the markers removed in ``result``; returns the session to
    record."""
    moved = result.moved
    q, ph = dialect.quote_ident, dialect.placeholder
    table = dialect.kernel_table(STATE_TABLE)
    cur = conn.cursor()
    for p in moved:
        for kind in ("wm", "rr"):  # live and re-route watermarks: a replay re-applies both kinds of record
            cur.execute(f"DELETE FROM {table} WHERE {q('namespace')} = {ph} AND {q('key')} LIKE {ph}",
                        (store.namespace, f"{kind}:{p}:%"))
    store.save(conn, {p: new for p, (_, new) in moved.items()}, {})
    stale = [marker_key(p, o) for (p, o) in load_markers(conn, dialect, spec.topic)
             if p in moved and o >= moved[p][1]]
    if stale:
        cur.executemany(f"DELETE FROM {table} WHERE {q('namespace')} = {ph} AND {q('key')} = {ph}",
                        [(marker_namespace(spec.topic), k) for k in stale])
    result.markers_removed = len(stale)
    return Session(
        channel=spec.owner_id, kind=REWIND, group_topic=spec.topic,
        offsets={p: (new, old - 1) for p, (old, new) in moved.items()}, started_at=utcnow(),
        detail=f"rewound {how}: " + ", ".join(f"partition {p}: {old} -> {new}"
                                             for p, (old, new) in sorted(moved.items())))
