"""``cdx status``: the state of every channel and offline-register database, the roles, and uploads.

Per database (``DatabaseStatus``), read from the database itself and from Kafka:

- **reachable**: whether the database opens and answers;
- **last applied**: the newest ``Applied`` download session of kind ``batch``, ``resync`` or
  ``dlq-replay`` (time, session id, offsets), and the stored offsets per partition;
- **lag in records**: the group topic's end offsets minus the offsets stored in the database (the
  earliest offset where none is stored); offsets, so compacted-away records count too;
- **lag in seconds**: when behind, the age of the oldest unapplied record (Kafka timestamp of the
  first record at the stored offset of each lagging partition); if none can be read, now minus
  the capture time of the last applied change; 0 when caught up;
- **dead letters**: letters of this database on ``<prefix>._dlq`` (distinct records), and how many
  are still pending (not replayed, see ``cdx dlq``);
- **last error**: the newest ``Failed`` session;
- **sink running**: membership of the sink's consumer group (see :mod:`cdx.connectors.sink.roles`).

Roles: capture, router, sinks, HQ upload sink (``roles``). Uploads: per channel and upload table,
the counter published by the channel upload (``cdx.connectors.upload.uploader.load_upload_positions``)
and the last counter received at HQ (the HQ upload sessions of ``cdx.connectors.upload.sessions``),
when the upload side is installed and reachable.

Nothing here writes anywhere. Kafka or a database being down is reported, not raised.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any, TypeVar

from cdx import controls
from cdx.cleanup import quietly
from cdx.connectors.sink import sessions as hist
from cdx.connectors.sink.kafkaops import first_timestamps, watermarks
from cdx.connectors.sink.letters import DeadLetter, latest_by_origin, load_markers, read_letters
from cdx.connectors.sink.lock import live_holder, member_name
from cdx.connectors.sink.roles import Role, roles
from cdx.connectors.sink.sessions import APPLIED, BATCH, DLQ_REPLAY, FAILED, RESYNC, Session
from cdx.connectors.sink.spec import SinkSpec, sink_specs
from cdx.connectors.sink.state import StateStore
from cdx.dialects import get_dialect
from cdx.dialects.reach import missing_sqlite_file
from cdx.errors import CdxError, Unreachable
from cdx.kafka.config import client_config
from cdx.kafka.reach import require_kafka
from cdx.topics import dlq_topic
from cdx.topology.rollout import Rollout, rollout
from cdx.topology.root import Topology

_T = TypeVar("_T")


@dataclass
class DatabaseStatus:
    owner_id: str
    kind: str
    channel_id: str
    group_id: str
    topic: str
    dialect: str
    database: str
    reachable: bool = False
    error: str | None = None
    """Why the database could not be read."""
    sink_running: bool | None = None
    sink_members: list[str] = field(default_factory=list)
    stored_offsets: dict[int, int] = field(default_factory=dict)
    end_offsets: dict[int, int] = field(default_factory=dict)
    lag_records: int | None = None
    lag_seconds: float | None = None
    last_applied: Session | None = None
    last_failed: Session | None = None
    dead_letters: int = 0
    dead_letters_pending: int | None = None
    paused: str | None = None
    """``<since> <who>`` while ``cdx channel pause`` holds it (lag keeps counting), else ``None``."""
    schedules: dict[str, str] = field(default_factory=dict)
    """Windowed and interval schedules delivering to it: ``open``, ``closed`` or ``every <N>s``."""

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k not in ("last_applied", "last_failed")}
        out["stored_offsets"] = {str(p): o for p, o in sorted(self.stored_offsets.items())}
        out["end_offsets"] = {str(p): o for p, o in sorted(self.end_offsets.items())}
        a, f = self.last_applied, self.last_failed
        out["last_applied"] = {"session": a.session_id, "kind": a.kind, "time": a.to_json()["finished_at"],
                               "offsets": a.to_json()["offsets"], "records": a.records,
                               "source_time": a.to_json()["last_source_ts"]} if a else None
        out["last_error"] = {"session": f.session_id, "kind": f.kind, "time": f.to_json()["finished_at"],
                             "error": f.error} if f else None
        return out


@dataclass
class UploadStatus:
    channel: str
    table: str
    published_counter: int | None = None
    """Highest counter the channel upload published (``high`` of its position)."""
    low_watermark: int | None = None
    open_gaps: int | None = None
    received_counter: int | None = None
    """Highest counter the HQ upload sink applied (HQ upload sessions)."""
    received_at: str | None = None
    errors: list[str] = field(default_factory=list)
    """A halted table, skipped gaps not acknowledged yet (``cdx dlq ack``)."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Status:
    generated_at: str
    topic_prefix: str
    kafka_reachable: bool
    roles: list[Role]
    databases: list[DatabaseStatus]
    uploads: list[UploadStatus]
    warnings: list[str]
    hq_reachable: bool | None = None
    rollout: Rollout | None = None
    """The published topology revision and the one each role runs (None: Kafka did not answer)."""

    def to_json(self) -> dict[str, Any]:
        return {"generated_at": self.generated_at, "topic_prefix": self.topic_prefix,
                "kafka_reachable": self.kafka_reachable, "hq_reachable": self.hq_reachable,
                "rollout": self.rollout.to_json() if self.rollout is not None else None,
                "roles": [r.to_json() for r in self.roles],
                "databases": [d.to_json() for d in self.databases], "uploads": [u.to_json() for u in self.uploads],
                "warnings": self.warnings}


def _why(e: BaseException) -> str:
    return str(e) if isinstance(e, CdxError) else f"{type(e).__name__}: {e}"


def gather(topology: Topology, owner_ids: Iterable[str] | None = None, *, include_uploads: bool = True) -> Status:
    k = topology.kafka
    config = client_config(k.bootstrap_servers, k.security)
    specs = sink_specs(topology, owner_ids)
    warnings: list[str] = []

    def attempt(what: str, read: Callable[[], _T], failed: _T) -> _T:
        """``read()``, or ``failed`` and a warning saying why."""
        try:
            return read()
        except Exception as e:
            warnings.append(f"{what}: {_why(e)}")
            return failed

    def kafka_roles() -> list[Role] | None:
        require_kafka(k.bootstrap_servers)  # nothing listening: say so at once, not after every timeout
        return roles(config, topology)

    role_list = attempt("Kafka", kafka_roles, None) or []
    kafka_ok = not warnings  # no Kafka warning
    letters: list[DeadLetter] = []
    bounds: dict[str, tuple[dict[int, int], dict[int, int]] | None] = {}
    if kafka_ok:
        letters = attempt("dead-letter topic", partial(read_letters, config, dlq_topic(k.topic_prefix)), [])
        bounds = {t: attempt(t, partial(watermarks, config, t), None) for t in sorted({s.topic for s in specs})}
    running = {r.name: r for r in role_list if r.role == "sink"}
    latest = latest_by_origin(letters)
    databases = []
    for spec in specs:
        st = _database(spec, config, bounds.get(spec.topic), latest, kafka_ok)
        role = running.get(spec.owner_id)
        if role is not None and st.sink_running:
            role.running, role.members = True, [*st.sink_members, *role.members]
            role.detail = f"channel lock held; {role.detail}"
        elif role is not None:
            st.sink_running, st.sink_members = role.running, role.members
        databases.append(st)
    uploads: list[UploadStatus] = []
    if include_uploads and kafka_ok:
        try:
            uploads = upload_status(config, topology)
            warnings += attention(config, topology, letters, uploads)
        except Exception as e:
            warnings.append(f"uploads: {_why(e)}")
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    hq_error = hq_unreachable(topology)
    if hq_error is not None:
        warnings.append(f"HQ database {topology.hq.redacted()} {hq_error}")
    state = attempt("topology rollout", partial(rollout, topology), None) if kafka_ok else None
    return Status(now, k.topic_prefix, kafka_ok, role_list, databases, uploads, warnings,
                  hq_reachable=hq_error is None, rollout=state)


def hq_unreachable(topology: Topology) -> str | None:
    """Why the HQ database cannot be opened (``unreachable: <reason>; <fix>``), or None when it opens.
    A SQLite file that does not exist is reported, not created."""
    path = missing_sqlite_file(topology.hq.dialect.value, topology.hq.dsn)
    if path is not None:
        return f"unreachable: {path} does not exist; fix hq.dsn or create the HQ database"
    try:
        conn = get_dialect(topology.hq.dialect.value).connect(topology.hq.dsn)
    except Unreachable as e:
        return f"unreachable: {e.reason}; {e.hint}"
    conn.close()
    return None


def schedule_states(spec: SinkSpec) -> dict[str, str]:
    """Each non-continuous schedule of the database: ``open``/``closed`` (windows, now) or ``every <N>s``."""
    from cdx.connectors.sink.gate import clock_now

    now = clock_now()
    return {s.id: f"every {s.plan.interval}s" if s.plan.interval else "open" if s.plan.open_at(now, s.timezone)
            else "closed" for group in spec.schedules.values() for s in group}


def _database(spec: SinkSpec, config: Mapping[str, Any], bounds: tuple[dict[int, int], dict[int, int]] | None,
              latest: Mapping[tuple[str, int, int], DeadLetter], kafka_ok: bool) -> DatabaseStatus:
    st = DatabaseStatus(spec.owner_id, spec.kind, spec.channel_id, spec.group_id, spec.topic, spec.dialect,
                        spec.redacted_dsn())
    st.schedules = schedule_states(spec)
    mine = [x for x in latest.values() if (x.channel or "").casefold() == spec.owner_id.casefold()]
    st.dead_letters = len(mine)
    markers: dict[tuple[int, int], dict[str, Any]] | None
    if missing_sqlite_file(spec.dialect, spec.dsn) is not None:  # not created yet: nothing applied; not created here
        markers, st.reachable = {}, True
    else:
        markers = _read_database(spec, st)
    if markers is not None:
        st.dead_letters_pending = sum(1 for x in mine if x.origin is not None and x.origin[0] == spec.topic
                                      and (x.origin[1], x.origin[2]) not in markers)
    if bounds is None or not st.reachable:
        return st
    lows, ends = bounds
    st.end_offsets = dict(ends)
    at = {p: st.stored_offsets.get(p, lows.get(p, 0)) for p in ends}
    st.lag_records = sum(max(end - at[p], 0) for p, end in ends.items())
    if st.lag_records == 0:
        st.lag_seconds = 0.0
        return st
    behind = {p: at[p] for p, end in ends.items() if end > at[p]}
    try:
        stamps = first_timestamps(config, spec.topic, behind, ends) if kafka_ok else {}
    except Exception:
        stamps = {}
    if stamps:
        st.lag_seconds = round(max(0.0, time.time() - min(stamps.values()) / 1000), 3)
    elif st.last_applied is not None and st.last_applied.last_source_ts is not None:
        src = st.last_applied.last_source_ts.replace(tzinfo=dt.UTC).timestamp()
        st.lag_seconds = round(max(0.0, time.time() - src), 3)
    return st


def _read_database(spec: SinkSpec, st: DatabaseStatus) -> dict[tuple[int, int], dict[str, Any]] | None:
    """Fill ``st`` from the database of ``spec`` (offsets, sessions, pause, lock holder); its replay
    markers, or None (with ``st.error``) when it cannot be opened or read."""
    d = get_dialect(spec.dialect)
    markers: dict[tuple[int, int], dict[str, Any]] | None = None
    try:
        conn = d.connect(spec.dsn)
    except Unreachable as e:
        st.error = f"unreachable: {e.reason}; {e.hint}"
        return None
    except Exception as e:
        st.error = f"cannot open the database: {_why(e)}"
        return None
    try:
        if controls.state_table_exists(conn, d):
            st.stored_offsets = StateStore(d, spec.topic).load(conn).offsets
            markers = load_markers(conn, d, spec.topic)
            st.paused = controls.read(conn, d).paused
        else:
            markers = {}
        st.last_applied = hist.last(conn, d, spec.owner_id, APPLIED, kinds=(BATCH, RESYNC, DLQ_REPLAY))
        st.last_failed = hist.last(conn, d, spec.owner_id, FAILED)
        st.reachable = True
        holder = live_holder(d, conn, spec.consumer_group)
        if holder is not None:  # a shared-consumer host is in no consumer group: its channel lock says it runs
            st.sink_running, st.sink_members = True, [member_name(spec.consumer_group, holder)]
    except Exception as e:
        st.error = f"cannot read the database: {_why(e)}"
    finally:
        quietly(conn.rollback, "status: rolling back a read")
        quietly(conn.close, "status: closing a connection")
    return markers


def upload_status(config: Mapping[str, Any], topology: Topology) -> list[UploadStatus]:
    """Per channel and upload table: counter published (channel upload) and received (HQ upload sink)."""
    try:
        from cdx.connectors.upload.uploader import load_upload_positions, upload_positions_topic
    except ImportError:
        return []
    out: dict[tuple[str, str], UploadStatus] = {}
    for key, pos in load_upload_positions(config, upload_positions_topic(topology.kafka.topic_prefix)).items():
        channel, _, table = key.partition("/")
        out[(channel, table)] = UploadStatus(channel, table, pos.high, pos.low, pos.open_gaps(),
                                             errors=[f"halted: {pos.halted}"] if pos.halted else [])
    for channel, table, counter, at in _received_at_hq(topology):
        st = out.get((channel, table)) or next(
            (u for (c, t), u in out.items() if c == channel and t.rsplit(".", 1)[-1].casefold() == table.casefold()),
            None)
        if st is None:
            st = out[(channel, table)] = UploadStatus(channel, table)
        st.received_counter, st.received_at = counter, at
    return sorted(out.values(), key=lambda u: (u.channel, u.table))


def attention(config: Mapping[str, Any], topology: Topology, letters: list[DeadLetter],
              uploads: list[UploadStatus]) -> list[str]:
    """Letters that need a person until acknowledged (``cdx.connectors.upload.acks``): each upload gap is
    added to its table's errors; the others (capture) come back as warnings."""
    from cdx.connectors.upload.acks import load_acks, needs_attention

    open_letters = needs_attention(letters, load_acks(config, topology.kafka.topic_prefix)) if letters else []
    by_table = {(u.channel.casefold(), u.table.casefold()): u for u in uploads}
    out = []
    for x in open_letters:
        text = (f"dead letter {x.dlq_offset} ({x.component}, {x.error_kind}): {x.error}"
                f" (cdx dlq ack --offset {x.dlq_offset})")
        st = by_table.get(((x.channel or "").casefold(), (x.table or "").casefold()))
        if st is not None:
            st.errors.append(text)
        else:
            out.append(f"{x.table or ''}: {text}")
    return out


def _received_at_hq(topology: Topology) -> list[tuple[str, str, int | None, str | None]]:
    """(channel, HQ table, last counter, when) from the HQ upload sessions (``Applied`` only)."""
    try:
        from cdx.connectors.upload import sessions as up
    except ImportError:
        return []
    d = get_dialect(topology.hq.dialect.value)
    conn = d.connect(topology.hq.dsn)
    try:
        if not d.table_exists(conn, up.SCHEMA, up.TABLE):
            return []
        q, p = d.quote_ident, d.placeholder
        cur = conn.cursor()
        cur.execute(f"SELECT {q('channel')}, {q('hq_table')}, MAX({q('last_counter')}), MAX({q('finished_at')})"
                    f" FROM {d.qualified(up.SCHEMA, up.TABLE)} WHERE {q('status')} = {p} AND {q('hq_table')} <> ''"
                    f" GROUP BY {q('channel')}, {q('hq_table')}", (up.APPLIED,))
        finished = next(c for c in up.COLUMNS if c.name == "finished_at")
        out = []
        for channel, table, counter, at in cur.fetchall():
            when = d.decode(finished, at)
            out.append((str(channel), str(table), int(counter) if counter is not None else None,
                        when.replace(tzinfo=dt.UTC).isoformat(timespec="seconds") if when else None))
        return out
    finally:
        conn.rollback()
        conn.close()

