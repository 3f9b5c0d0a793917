"""Chunked, resumable snapshots of one HQ table: the contract (chunks are read by ``TrackingSource._chunk``)
and the stale keys a re-snapshot deletes (:func:`stale_keys`).

Contract
- A snapshot starts at a version ``V0`` (``current_version`` before the first chunk) and reads the
  table in primary-key order, ``chunk_rows`` rows per short read transaction. Each chunk is
  published **with the snapshot's progress in the position** (``SnapshotProgress.after`` = the raw
  key of its last row) in one Kafka transaction: a kill at any moment resumes after the last
  committed chunk, never from the start, and no transaction (database or Kafka) lasts longer
  than one chunk, whatever the table's size.
- Chunks are read at different times, so a row may be published as it was after ``V0``; once the
  last chunk is published the position returns to plain streaming from ``V0``, and the changes
  since ``V0`` bring every row changed meanwhile up to date (records are upserts per key).
- A **re-snapshot** (the position expired, TRUNCATE) also deletes the keys that are live on the
  table topic but were not published by this snapshot (op ``r`` with its version and start time):
  both sides of the comparison are keys decoded from the topic by the same codec, so key types
  (timestamps, dates, decimals, text) always compare alike. Those deletes go out with the last
  chunk, in the same transaction as the position that ends the snapshot.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from cdx.codec.codec import Codec
from cdx.kafka.reading import read_to_end


def freeze(key: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted(key.items()))


def stale_keys(config: Mapping[str, Any], topic: str, codec: Codec, version: int, started_ms: int,
               last_chunk: Iterable[bytes]) -> list[dict[str, Any]]:
    """Keys live on ``topic`` whose last record is not a read of this snapshot (``version``,
    ``started_ms``) and not in ``last_chunk`` (encoded keys of the chunk about to be published):
    rows gone from the table while its changes were unavailable. Every key compared was decoded by
    ``codec``, so key types compare alike."""
    stale: dict[tuple[tuple[str, Any], ...], bool] = {}
    for msg in read_to_end(config, topic):
        key = freeze(codec.decode_key(topic, msg.key() or b""))
        value = msg.value()
        env = codec.decode_value(topic, value) if value is not None else None
        if env is None or env["op"] == "d":
            stale.pop(key, None)
            continue
        source = env.get("source") or {}
        ours = env["op"] == "r" and source.get("change_version") == version and source.get("ts_ms") == started_ms
        stale[key] = not ours
    for raw in last_chunk:
        stale.pop(freeze(codec.decode_key(topic, raw)), None)
    return [dict(k) for k, is_stale in stale.items() if is_stale]
