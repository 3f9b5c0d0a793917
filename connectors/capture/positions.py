"""Capture positions: the change-tracking version each HQ table has reached.

Positions live in a compacted topic (``cdx.topics.positions_topic``), key = ``<hqdb>/<table>``,
value = JSON ``{"version": N, "columns": [...], "ts_ms": T}``. They are written in the SAME Kafka
transaction as the changes they cover, so after any crash the committed position and the
committed records agree: resuming from the position neither skips nor repeats a change.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cdx.kafka.reading import read_to_end


@dataclass(frozen=True)
class Position:
    version: int
    ts_ms: int


def position_key(hq_name: str, table: str) -> bytes:
    return f"{hq_name}/{table}".encode()


def encode_position(version: int) -> bytes:
    return json.dumps({"version": int(version), "ts_ms": int(time.time() * 1000)}).encode()


def load_positions(config: Mapping[str, Any], topic: str, hq_name: str) -> dict[str, Position]:
    """The last committed position of every table of ``hq_name`` (read_committed, to the end)."""
    prefix = f"{hq_name}/"
    out: dict[str, Position] = {}
    for msg in read_to_end(config, topic):
        key = (msg.key() or b"").decode()
        if not key.startswith(prefix):
            continue
        table = key[len(prefix):]
        value = msg.value()
        if value is None:
            out.pop(table, None)
            continue
        data = json.loads(value)
        out[table] = Position(int(data["version"]), int(data.get("ts_ms", 0)))
    return out
