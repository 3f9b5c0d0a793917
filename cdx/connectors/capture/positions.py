"""Capture positions: the change-tracking version each HQ table has reached.

Positions live in a compacted topic (``cdx.topics.positions_topic``), key = ``<hqdb>/<table>``,
value = JSON ``{"version": N, "ts_ms": T}``. They are written in the SAME Kafka
transaction as the changes they cover, so after any crash the committed position and the
committed records agree: resuming from the position neither skips nor repeats a change.

While a table is being snapshotted in chunks the position also holds the snapshot's progress:
``"snapshot": {"after": [<raw key of the last row published>], "rows": n, "started_ms": T,
"resnapshot": bool}``; ``version`` is then the version the snapshot started at (streaming
resumes from it once the last chunk is published). Raw key values keep their database type
through JSON with tags (``{"$dt": iso}``, ``{"$date": iso}``, ``{"$time": iso}``,
``{"$dec": "1.50"}``, ``{"$hex": "00ff"}``, ``{"$uuid": "..."}``) so they bind back unchanged.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import types
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from cdx.kafka.reading import latest_values


@dataclass(frozen=True)
class SnapshotProgress:
    """A chunked snapshot under way: rows up to the key ``after`` (raw database values) are published."""

    after: list[Any] | None
    rows: int
    started_ms: int
    resnapshot: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"after": None if self.after is None else [encode_raw(v) for v in self.after], "rows": self.rows,
                "started_ms": self.started_ms, "resnapshot": self.resnapshot}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SnapshotProgress:
        after = data.get("after")
        return cls(None if after is None else [decode_raw(v) for v in after], int(data.get("rows", 0)),
                   int(data.get("started_ms", 0)), bool(data.get("resnapshot", False)))


@dataclass(frozen=True)
class Position:
    version: int
    ts_ms: int
    snapshot: SnapshotProgress | None = None


def position_key(hq_name: str, table: str) -> bytes:
    return f"{hq_name}/{table}".encode()


def encode_position(version: int, snapshot: SnapshotProgress | None = None) -> bytes:
    doc: dict[str, Any] = {"version": int(version), "ts_ms": int(time.time() * 1000)}
    if snapshot is not None:
        doc["snapshot"] = snapshot.to_json()
    return json.dumps(doc).encode()


_ENCODERS: tuple[tuple[type | types.UnionType, str, Callable[[Any], str]], ...] = (
    (dt.datetime, "$dt", dt.datetime.isoformat), (dt.date, "$date", dt.date.isoformat),
    (dt.time, "$time", dt.time.isoformat), (Decimal, "$dec", str),
    (bytes | bytearray | memoryview, "$hex", lambda v: bytes(v).hex()), (uuid.UUID, "$uuid", str))


def encode_raw(value: Any) -> Any:
    """A raw database value as JSON that :func:`decode_raw` turns back into the same Python value."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    for kind, tag, text in _ENCODERS:  # datetime before date: a datetime is a date
        if isinstance(value, kind):
            return {tag: text(value)}
    raise TypeError(f"cannot keep a {type(value).__name__} key value in a snapshot position")


_DECODERS = {"$dt": dt.datetime.fromisoformat, "$date": dt.date.fromisoformat, "$time": dt.time.fromisoformat,
             "$dec": Decimal, "$hex": bytes.fromhex, "$uuid": uuid.UUID}


def decode_raw(value: Any) -> Any:
    if isinstance(value, dict) and len(value) == 1:
        tag, text = next(iter(value.items()))
        return _DECODERS[tag](text)
    return value


def load_positions(config: Mapping[str, Any], topic: str, hq_name: str) -> dict[str, Position]:
    """The last committed position of every table of ``hq_name`` (read_committed, to the end)."""
    prefix = f"{hq_name}/"
    out: dict[str, Position] = {}
    for key, value in latest_values(config, topic).items():
        if key.startswith(prefix):
            data = json.loads(value)
            snap = data.get("snapshot")
            out[key[len(prefix):]] = Position(int(data["version"]), int(data.get("ts_ms", 0)),
                                              SnapshotProgress.from_json(snap) if snap else None)
    return out
