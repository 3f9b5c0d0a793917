"""``cdx dlq replay``: apply dead-lettered records to their channel database once the cause is fixed.

For each selected letter (the newest letter of its origin, see :mod:`cdx.connectors.sink.letters`):

- **already replayed** (a marker exists in the database): nothing happens, so replaying twice
  never applies twice;
- **not reached**: the database's stored offset is not past the record (the channel was rewound
  with ``cdx replay``): the sink reads it again itself, the letter is left alone;
- **stale**: the group topic holds a later **newer change** of the same key (same table and
  primary key, key bytes compared): that change is (or will be) applied by the sink and wins;
  applying the letter would put an older version back. The letter is marked ``stale``, nothing is
  written. A later record of the key from the same source partition at a source offset not
  above the letter's is a router re-send (of this change or an older one), not a newer change; a
  tombstone counts only when its delete is not in the topic any more (compacted away);
- otherwise the original record (bytes carried in the letter) is decoded and applied through the
  sink's own path (``plan_batch`` against a fresh state, so the watermark that skipped it does
  not skip it again; row filter, parent/child order, table creation as usual; offsets and
  watermarks are not touched), in **one transaction** with its replay marker and a
  ``dlq-replay`` download session;
- a record the database still refuses (or that still cannot be decoded) is dead-lettered again
  with the new error (``replay_of`` = the old letter's offset, which is then superseded) and a
  ``Failed`` session is recorded: nothing is dropped.

Concurrency with a running sink: the transaction first locks the database's offset rows
(``UPDATE ... SET value = value``), then reads the stored offsets and checks for later records up
to them, so a sink batch cannot slip a newer version of the key in between (a deadlock with
the sink is retried).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cdx.connectors.sink.apply import apply_plan, batch_session
from cdx.connectors.sink.kafkaops import read_range, watermarks
from cdx.connectors.sink.letters import DeadLetter, Origin, latest_by_origin, load_markers, read_letters, write_marker
from cdx.connectors.sink.plan import plan_batch
from cdx.connectors.sink.records import Decoder, Record
from cdx.connectors.sink.sessions import DLQ_REPLAY, FAILED, SessionLog
from cdx.connectors.sink.spec import SinkSpec, sink_specs
from cdx.connectors.sink.state import SinkState, StateStore
from cdx.connectors.sink.tables import TableManager
from cdx.connectors.sink.tools import SinkTools, open_database
from cdx.dialects import Connection, Dialect, get_dialect
from cdx.dialects.base import STATE_TABLE
from cdx.errors import CdxError, ConfigError, RetriableError, SkippableError
from cdx.stage.backoff import Backoff
from cdx.stage.sessions import utcnow

log = logging.getLogger("cdx.sink")

APPLIED, ALREADY, STALE, NOT_REACHED, FAILED_AGAIN, SKIPPED = (
    "applied", "already replayed", "stale", "not reached", "failed again", "skipped")


@dataclass
class Outcome:
    channel: str
    dlq_offset: int
    origin: Origin | None
    result: str
    detail: str = ""
    session: str | None = None

    def to_json(self) -> dict[str, object]:
        topic, partition, offset = self.origin or (None, None, None)
        return {"channel": self.channel, "dlq_offset": self.dlq_offset, "group_topic": topic, "partition": partition,
                "offset": offset, "result": self.result, "detail": self.detail, "session": self.session}


class _Refused(Exception):
    """The record cannot be applied: it goes back to the dead-letter topic."""


def lock_offsets(conn: Connection, dialect: Dialect, store: StateStore) -> None:
    """Lock the sink's offset rows for the rest of the transaction (no-op where the transaction already
    holds the database's write lock)."""
    q, p = dialect.quote_ident, dialect.placeholder
    conn.cursor().execute(f"UPDATE {dialect.kernel_table(STATE_TABLE)} SET {q('value')} = {q('value')}"
                          f" WHERE {q('namespace')} = {p} AND {q('key')} LIKE {p}", (store.namespace, "offset:%"))


class DlqReplayer:
    def __init__(self, tools: SinkTools, *, retries: int = 5) -> None:
        self.tools = tools
        self.retries = retries

    def replay(self, owner_ids: Iterable[str] | None = None, dlq_offsets: Iterable[int] | None = None
               ) -> list[Outcome]:
        """Replay the letters at ``dlq_offsets`` (default: every pending letter) of ``owner_ids``
        (default: every database). Raises ``ConfigError`` for an offset that is no sink letter."""
        topology = self.tools.topology
        specs = sink_specs(topology, owner_ids)
        letters = read_letters(self.tools.config, self.tools.dlq_topic)
        by_offset = {x.dlq_offset: x for x in letters}
        latest = latest_by_origin(letters)
        wanted = sorted(set(dlq_offsets or ()))
        for off in wanted:
            letter = by_offset.get(off)
            if letter is None or not letter.replayable:
                raise ConfigError(f"no replayable channel dead letter at offset {off} of {self.tools.dlq_topic}"
                                  " (see cdx dlq list)")
            if not any(s.owner_id.casefold() == (letter.channel or "").casefold() for s in specs):
                raise ConfigError(f"dead letter {off} belongs to {letter.channel!r}, not to the selected channels")
        outcomes: list[Outcome] = []
        for spec in specs:
            mine = [x for x in latest.values() if (x.channel or "").casefold() == spec.owner_id.casefold()]
            if wanted:
                origins = {by_offset[o].origin for o in wanted}
                mine = [x for x in mine if x.origin in origins]
            if mine:
                outcomes += _Channel(self, spec, sorted(mine, key=lambda x: x.origin or ("", 0, 0))).run()
        return outcomes


class _Channel:
    """Replays the letters of one database."""

    def __init__(self, owner: DlqReplayer, spec: SinkSpec, letters: list[DeadLetter]) -> None:
        self.owner = owner
        self.tools = owner.tools
        self.spec = spec
        self.letters = letters
        self.dialect = get_dialect(spec.dialect)
        self.store = StateStore(self.dialect, spec.topic)
        self.tables = TableManager(self.dialect, spec.extension_schemas)
        self.sessions = SessionLog(self.dialect, spec.owner_id)
        self.decoder = Decoder(self.tools.codec, spec.topic)
        self.conn: Connection
        """Open while ``run`` runs."""
        self.ends: dict[int, int] = {}
        self.later: dict[Origin, list[tuple[int, bytes | None, bytes | None]]] = {}
        """origin -> later records with the same key bytes: (offset, key, value), in offset order."""

    def run(self) -> list[Outcome]:
        out: list[Outcome] = []
        todo: list[DeadLetter] = []
        self.conn = open_database(self.spec)
        try:
            with self.dialect.transaction(self.conn):
                self.store.ensure(self.conn)
                self.sessions.ensure(self.conn)
                markers = load_markers(self.conn, self.dialect, self.spec.topic)
                stored = self.store.load(self.conn).offsets
            for letter in self.letters:
                origin = letter.origin
                assert origin is not None
                if "record_omitted" in letter.extra:
                    out.append(self._outcome(letter, SKIPPED, f"{letter.extra['record_omitted']}; cdx replay the"
                                                              f" channel from offset {origin[2]} instead"))
                elif origin[0] != self.spec.topic:
                    out.append(self._outcome(letter, SKIPPED, f"the letter comes from {origin[0]}; this database now"
                                                              f" reads {self.spec.topic}"))
                elif (settled := self._settled(letter, markers, stored)) is not None:
                    out.append(settled)
                else:
                    todo.append(letter)
            if todo:
                _, self.ends = watermarks(self.tools.config, self.spec.topic)
                self._scan(todo, {p: min(x.origin[2] + 1 for x in todo if x.origin and x.origin[1] == p)
                                  for p in {x.origin[1] for x in todo if x.origin}}, self.ends)
                for letter in todo:
                    out.append(self._replay_one(letter))
        finally:
            self.conn.close()
        return out

    def _outcome(self, letter: DeadLetter, result: str, detail: str = "", session: str | None = None) -> Outcome:
        return Outcome(self.spec.owner_id, letter.dlq_offset, letter.origin, result, detail, session)

    def _settled(self, letter: DeadLetter, markers: Mapping[tuple[int, int], Mapping[str, Any]],
                 stored: Mapping[int, int], meanwhile: bool = False) -> Outcome | None:
        """The outcome of a letter replayed already or not reached (read again by the sink), else None."""
        assert letter.origin is not None
        _, part, offset = letter.origin
        mark = markers.get((part, offset))
        if mark is not None:
            detail = "replayed meanwhile" if meanwhile else f"{mark.get('outcome')} at {mark.get('at')}"
            return self._outcome(letter, ALREADY, detail, mark.get("session"))
        if stored.get(part, 0) <= offset:
            return self._outcome(letter, NOT_REACHED, "the sink has not read this record since it was rewound;"
                                                      " it applies it itself")
        return None

    def _scan(self, letters: list[DeadLetter], starts: Mapping[int, int], ends: Mapping[int, int]) -> None:
        """Note, for each letter, the first later record of the group topic with the same key bytes."""
        by_key: dict[tuple[int, bytes], list[Origin]] = {}
        for x in letters:
            key = x.record_bytes()[0]
            if key is not None and x.origin is not None:
                by_key.setdefault((x.origin[1], key), []).append(x.origin)
        ranges = {p: e for p, e in ends.items() if p in starts and starts[p] < e}
        if not by_key or not ranges:
            return
        for msg in read_range(self.tools.config, self.spec.topic, ranges, {p: starts[p] for p in ranges}):
            p, o = msg.partition() or 0, msg.offset() or 0
            for origin in by_key.get((p, msg.key() or b""), ()):
                seen = self.later.setdefault(origin, [])
                if o > origin[2] and all(o != x[0] for x in seen):
                    seen.append((o, msg.key(), msg.value()))

    def _newer(self, rec: Record) -> int | None:
        """Offset of the first later record that is a newer change of ``rec``'s key (see module docstring)."""
        mine = rec.change.position if rec.change is not None else None
        previous_decoded = rec.change is not None and rec.change.is_delete  # its own tombstone follows it
        for offset, key, value in sorted(self.later.get((self.spec.topic, rec.partition, rec.offset), [])):
            if value is None:  # a tombstone: its delete precedes it, unless compacted away
                if not previous_decoded:
                    return offset
                previous_decoded = False
                continue
            other = self.decoder.decode(rec.partition, offset, key, value).change
            previous_decoded = other is not None
            if mine is None or other is None:
                return offset
            pos = other.position
            if (pos.topic, pos.partition) != (mine.topic, mine.partition) or pos.offset > mine.offset:
                return offset
        return None

    def _replay_one(self, letter: DeadLetter) -> Outcome:
        """Replay one letter, retrying a retriable database error (``owner.retries`` attempts in all)."""
        origin = letter.origin
        assert origin is not None
        _, part, offset = origin
        key, value, headers, ts = letter.record_bytes()
        rec = self.decoder.decode(part, offset, key, value, timestamp=ts, headers=headers)
        d = self.dialect
        backoff = Backoff(initial=0.5, maximum=5.0)
        for attempt in range(1, self.owner.retries + 1):
            started = utcnow()
            try:
                return self._apply_letter(letter, rec, part, offset, started)
            except _Refused as e:
                self.tables.reset()
                return self._again(letter, rec, str(e), started)
            except Exception as e:
                self.tables.reset()
                category = d.classify_error(e)
                if category is SkippableError:
                    return self._again(letter, rec, f"{type(e).__name__}: {e}", started)
                if category is RetriableError and attempt < self.owner.retries:
                    log.warning("dlq replay: %s: %s; retrying in %.1fs", self.spec.owner_id, e, backoff.peek())
                    time.sleep(backoff.next())
                    if self._broken():
                        self.conn.close()
                        self.conn = open_database(self.spec)
                    continue
                if isinstance(e, CdxError):
                    raise
                raise category(f"dlq replay of letter {letter.dlq_offset} ({self.spec.owner_id}):"
                               f" {type(e).__name__}: {e}") from e
        raise AssertionError("unreachable")

    def _apply_letter(self, letter: DeadLetter, rec: Record, part: int, offset: int,
                      started: dt.datetime) -> Outcome:
        """One attempt, in one sink transaction: skip a letter already replayed, not reached or
        superseded (marker written), else apply it with its marker and session."""
        d = self.dialect
        with d.transaction(self.conn):
            lock_offsets(self.conn, d, self.store)
            offsets = self.store.load(self.conn).offsets
            settled = self._settled(letter, load_markers(self.conn, d, self.spec.topic), offsets, meanwhile=True)
            if settled is not None:
                return settled
            stored = offsets[part]
            if stored > self.ends.get(part, 0):  # the sink moved on since the scan: look at the rest
                self._scan([letter], {part: self.ends.get(part, 0)}, {part: stored})
            newer = self._newer(rec)
            if newer is not None:
                write_marker(self.conn, d, self.spec.topic, part, offset, {
                    "outcome": "stale", "dlq_offset": letter.dlq_offset, "at": started.isoformat() + "Z",
                    "superseded_by": newer})
                return self._outcome(letter, STALE, f"a later change of the same key (offset {newer})"
                                                    " supersedes it; nothing written")
            if rec.change is None:
                raise _Refused(rec.error or "the letter holds a tombstone")
            plan = plan_batch([rec], SinkState(), self.spec)
            if plan.dead:
                raise _Refused(plan.dead[0][1])
            written = apply_plan(self.conn, d, self.tables, plan, self.spec)
            session = batch_session(self.spec, [rec], plan, written, started, kind=DLQ_REPLAY)
            write_marker(self.conn, d, self.spec.topic, part, offset, {
                "outcome": "applied", "dlq_offset": letter.dlq_offset, "at": started.isoformat() + "Z",
                "session": session.session_id})
            self.sessions.record(self.conn, session)
        log.info("dlq replay: %s %s[%d]@%d applied (letter %d)", self.spec.owner_id, self.spec.topic, part,
                 offset, letter.dlq_offset)
        return self._outcome(letter, APPLIED, f"{written.upserted} upserted, {written.deleted} deleted",
                             session.session_id)

    def _broken(self) -> bool:
        try:
            with self.dialect.transaction(self.conn):
                self.dialect.read_state(self.conn, self.store.namespace)
            return False
        except Exception:
            return True

    def _again(self, letter: DeadLetter, rec: Record, error: str, started: dt.datetime) -> Outcome:
        """Dead-letter the record again with the new error, record a Failed session."""
        attempt = int(letter.extra.get("attempt") or 1) + 1
        self.tools.dead_letters.send(self.spec.owner_id, self.spec.kind, self.spec.topic, rec, error,
                                     {"replay_of": letter.dlq_offset, "attempt": attempt})
        self.sessions.record_alone(self.conn, batch_session(
            self.spec, [rec], None, None, started, kind=DLQ_REPLAY, status=FAILED,
            error=f"replay of dead letter {letter.dlq_offset} failed: {error}"))
        log.warning("dlq replay: %s %s[%d]@%d refused again: %s", self.spec.owner_id, self.spec.topic,
                    rec.partition, rec.offset, error)
        return self._outcome(letter, FAILED_AGAIN, error)
