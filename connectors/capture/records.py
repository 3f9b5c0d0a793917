"""One tracked table's changes as Kafka record bytes: the capture's per-change work.

``ChangeEncoder(codec, topic, schemas, ...)`` is built per table (and rebuilt when its schemas change);
``encode(op, key, row, version, now)`` returns ``(key bytes, value bytes)`` of the change's Debezium-style
envelope (see docs/envelope.md); a delete is followed on the topic by a tombstone with the same key bytes,
which the caller produces. Pure: no I/O besides the codec's schema registration.
"""

from __future__ import annotations

from typing import Any

from cdx.codec import Codec, TableSchemas
from cdx.codec.envelope import SOURCE_VERSION, Op, Snapshot
from cdx.codec.errors import EncodeError

CONNECTOR = "cdx"
_SNAPSHOTS = {s.value: s.value for s in Snapshot}


class ChangeEncoder:
    """Encodes the changes of one table (see module docstring)."""

    def __init__(self, codec: Codec, topic: str, schemas: TableSchemas, *, hq_name: str, schema: str,
                 table: str) -> None:
        self.codec, self.topic, self.schemas = codec, topic, schemas
        self.hq_name, self.schema, self.table = hq_name, schema, table

    def envelope(self, op: Op, key: dict[str, Any], row: dict[str, Any] | None, version: int, now: int,
                 snapshot: str = "false") -> dict[str, Any]:
        """The envelope dict (``cdx.codec.envelope``), built directly: the same checks as ``make_envelope``
        without its per-change conversions. ``key`` and ``row`` are not copied (encoding never changes them)."""
        source = {"connector": CONNECTOR, "name": self.hq_name, "ts_ms": now, "snapshot": _SNAPSHOTS[snapshot],
                  "db": self.hq_name, "schema": self.schema, "table": self.table, "change_version": version,
                  "version": SOURCE_VERSION}
        if op is Op.DELETE:
            return {"before": key, "after": None, "source": source, "op": "d", "ts_ms": now}
        if row is None:
            raise EncodeError(f"op {op.value!r} needs 'after'")
        return {"before": None, "after": row, "source": source, "op": op.value, "ts_ms": now}

    def encode(self, op: Op, key: dict[str, Any], row: dict[str, Any] | None, version: int, now: int,
               snapshot: str = "false") -> tuple[bytes, bytes]:
        env = self.envelope(op, key, row, version, now, snapshot)
        key_bytes = self.codec.encode_key(self.topic, self.schemas.key, key)
        value = self.codec.encode_value(self.topic, self.schemas.value, env)
        assert value is not None
        return key_bytes, value
