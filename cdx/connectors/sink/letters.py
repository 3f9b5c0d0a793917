"""Reading the dead-letter topic ``<prefix>._dlq`` and the replay markers kept in channel databases.

The topic is shared: capture, the router, the channel sinks and the upload side all write letters
of the one format of :mod:`cdx.stage.letters` (which also reads the formats written before it).
``read_letters`` parses all of them into ``DeadLetter``; only sink letters can be replayed into a
channel database.

A sink letter is identified by its **origin**: (group topic, partition, offset) of the routed
record. A record may be dead-lettered more than once (delivery is at-least-once; a replay that
fails again writes a new letter with the new error); the newest letter of an origin is the one
that counts, older ones are *superseded*.

Replay markers live in the channel database's ``cdx_state`` table, namespace
``dlq:<group topic>``, key ``done:<partition>:<offset>`` (the origin), value JSON
``{"outcome": "applied"|"stale", "dlq_offset", "at", "session", "superseded_by"}``: written in the
same transaction as the replayed rows, so a letter is applied at most once (``cdx replay``
removes the markers of the offsets it rewinds over: those records are read again).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cdx.connectors.sink.kafkaops import read_range, watermarks
from cdx.connectors.sink.state import NAMESPACE_LIMIT, fit_name
from cdx.dialects import Connection, Dialect
from cdx.stage.letters import Letter
from cdx.stage.letters import parse_letter as parse_record

Origin = tuple[str, int, int]


@dataclass
class DeadLetter:
    """One letter of the dead-letter topic where it sits; ``letter`` is its content (:mod:`cdx.stage.letters`).

    ``group_topic``/``partition``/``offset``: the Kafka record the letter comes from (a sink letter: the
    routed record, its *origin*); ``source``: where the change came from (a sink letter: its HQ topic
    record; otherwise that same record); ``kind``: a sink letter's database kind (``channel``/``offline``),
    else the component."""

    dlq_partition: int
    dlq_offset: int
    timestamp_ms: int
    component: str
    """``sink`` (replayable), ``router``, ``capture``, ``upload``, ``upload-sink``, ``offline`` or ``unknown``."""
    error: str
    error_kind: str = "skippable"
    channel: str | None = None
    kind: str | None = None
    table: str | None = None
    key: Any = None
    op: str | None = None
    source: dict[str, Any] | None = None
    group_topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    replay_of: int | None = None
    letter: Letter | None = field(default=None, repr=False)

    @property
    def origin(self) -> Origin | None:
        if self.group_topic is None or self.partition is None or self.offset is None:
            return None
        return self.group_topic, int(self.partition), int(self.offset)

    @property
    def extra(self) -> dict[str, Any]:
        """The component-specific fields of the letter."""
        return self.letter.extra if self.letter is not None else {}

    @property
    def replayable(self) -> bool:
        return self.component == "sink" and self.origin is not None and self.record_bytes()[1] is not None

    def record_bytes(self) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes]] | None, int]:
        """The original record: key, value, headers, Kafka timestamp (ms)."""
        rec = self.letter.record if self.letter is not None else None
        if rec is None:
            return None, None, None, 0
        headers = [(k, v or b"") for k, v in rec.headers]
        return rec.key, rec.value, headers or None, int(rec.timestamp or 0)

    def to_json(self) -> dict[str, Any]:
        return {
            "dlq_partition": self.dlq_partition, "dlq_offset": self.dlq_offset,
            "time": _iso_ms(self.timestamp_ms), "component": self.component, "error_kind": self.error_kind,
            "channel": self.channel, "kind": self.kind, "table": self.table, "key": self.key, "op": self.op,
            "source": self.source, "group_topic": self.group_topic, "partition": self.partition,
            "offset": self.offset, "error": self.error, "replay_of": self.replay_of,
            "version": self.letter.version if self.letter is not None else None,
        }


def _iso_ms(ms: int) -> str | None:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="milliseconds") if ms > 0 else None


def parse_letter(partition: int, offset: int, timestamp_ms: int, key: bytes | None, value: bytes | None,
                 headers: Any) -> DeadLetter:
    """One record of the dead-letter topic, whoever wrote it and in whichever version (``headers``:
    pairs or a dict)."""
    x = parse_record(key, value, headers)
    src = x.source.to_json() if x.source is not None else None
    hq = x.extra.get("hq")
    return DeadLetter(
        partition, offset, timestamp_ms or x.ts_ms, x.component, x.error, x.error_kind, channel=x.channel,
        kind=str(x.extra.get("kind") or x.component), table=x.table, key=x.key, op=x.op,
        source=hq if isinstance(hq, dict) else src, group_topic=src["topic"] if src else None,
        partition=src["partition"] if src else None, offset=src["offset"] if src else None,
        replay_of=_int(x.extra.get("replay_of")), letter=x)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def read_letters(config: Mapping[str, Any], topic: str) -> list[DeadLetter]:
    """Every letter on the dead-letter topic, oldest first (empty when the topic does not exist)."""
    _, ends = watermarks(config, topic)  # none when the topic does not exist
    out = []
    for msg in read_range(config, topic, ends):
        ts_type, ts = msg.timestamp()
        out.append(parse_letter(msg.partition() or 0, msg.offset() or 0, ts if ts_type and ts > 0 else 0,
                                msg.key(), msg.value(), msg.headers()))
    return out


def latest_by_origin(letters: Iterable[DeadLetter]) -> dict[Origin, DeadLetter]:
    """The newest letter of every origin (sink letters only)."""
    out: dict[Origin, DeadLetter] = {}
    for letter in letters:
        origin = letter.origin
        if letter.component == "sink" and origin is not None:
            prev = out.get(origin)
            if prev is None or (letter.dlq_partition, letter.dlq_offset) > (prev.dlq_partition, prev.dlq_offset):
                out[origin] = letter
    return out


# ------------------------------------------------------------------------------ markers
def marker_namespace(topic: str) -> str:
    return fit_name("dlq:", topic, NAMESPACE_LIMIT)


def marker_key(partition: int, offset: int) -> str:
    return f"done:{partition}:{offset}"


def load_markers(conn: Connection, dialect: Dialect, topic: str) -> dict[tuple[int, int], dict[str, Any]]:
    """Replay markers of ``topic`` in this database: (partition, offset) -> marker (caller's transaction)."""
    out = {}
    for key, value in dialect.read_state(conn, marker_namespace(topic)).items():
        if not key.startswith("done:"):
            continue
        try:
            _, p, o = key.split(":")
            out[(int(p), int(o))] = json.loads(value)
        except ValueError:
            continue
    return out


def write_marker(conn: Connection, dialect: Dialect, topic: str, partition: int, offset: int,
                 marker: Mapping[str, Any]) -> None:
    dialect.write_state(conn, marker_namespace(topic), {marker_key(partition, offset): json.dumps(dict(marker))})


def letter_status(letter: DeadLetter, latest: Mapping[Origin, DeadLetter],
                  markers: Mapping[tuple[int, int], Mapping[str, Any]] | None) -> str:
    """``pending``, ``replayed``, ``stale`` (a newer change of the key made it moot), ``superseded``
    (a newer letter of the same record), ``unknown`` (database unreachable) or ``-`` (not replayable)."""
    origin = letter.origin
    if letter.component != "sink" or origin is None:
        return "-"
    newest = latest.get(origin)
    if newest is not None and newest is not letter:
        return "superseded"
    if markers is None:
        return "unknown"
    mark = markers.get((origin[1], origin[2]))
    if mark is None:
        return "pending"
    return "replayed" if mark.get("outcome") == "applied" else str(mark.get("outcome") or "replayed")
