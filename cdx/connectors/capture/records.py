"""One tracked table's changes as Kafka record bytes: the capture's per-change work.

``ChangeEncoder(codec, topic, schemas, ...)`` is built per table (and rebuilt when its schemas change);
``encode(op, key, row, version, now)`` returns ``(key bytes, value bytes)`` of the change's Debezium-style
envelope (see docs/envelope.md); a delete is followed on the topic by a tombstone with the same key bytes,
which the caller produces. Pure: no I/O besides the codec's schema registration.

With single-object encoding (``SingleObjectCodec``), the value of an insert, update or snapshot read is
spliced together: Avro encodes a record as the concatenation of its fields, so the envelope is ``before``
(null), ``after`` (the row, encoded by fastavro with the row schema and the same value preparation), then
``source``, ``op`` and ``ts_ms``, which change only with the version and the time and are encoded once per
(op, version, time). The bytes are exactly those of encoding the whole envelope (tested). Deletes and other
codecs take the general path. The schemas must be registered and published before (the capture does that
when it takes them: ``TrackingSource.refresh_schema``, ``CaptureWriter.encode``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from cdx.codec import AvroSchema, Codec, Column, SingleObjectCodec, TableSchemas
from cdx.codec.binary import avro_long, avro_string, write_body
from cdx.codec.envelope import SOURCE_VERSION, Op, Snapshot
from cdx.codec.errors import EncodeError
from cdx.codec.single_object import frame
from cdx.dialects import ColumnInfo, key_columns

CONNECTOR = "cdx"
_SNAPSHOTS = {s.value: s.value for s in Snapshot}
_TAILS_MAX = 64


def to_codec_columns(columns: Iterable[ColumnInfo]) -> list[Column]:
    """Dialect columns -> codec columns, primary-key columns first in key order."""
    cols = list(columns)
    order = key_columns(cols)
    by_name = {c.name: c for c in cols}
    ordered = [by_name[n] for n in order] + [c for c in cols if c.name not in order]
    return [Column(c.name, c.logical_type, nullable=c.nullable, primary_key=c.name in order,
                   precision=c.precision, scale=c.scale, length=c.length) for c in ordered]


class ChangeEncoder:
    """Encodes the changes of one table (see module docstring)."""

    def __init__(self, codec: Codec, topic: str, schemas: TableSchemas, *, hq_name: str, schema: str,
                 table: str) -> None:
        self.codec, self.topic, self.schemas = codec, topic, schemas
        self.hq_name, self.schema, self.table = hq_name, schema, table
        self._row: AvroSchema | None = None
        if type(codec) is SingleObjectCodec:
            before = next(f for f in schemas.value.to_dict()["fields"] if f["name"] == "before")
            self._row = AvroSchema.of(before["type"][1])
        self._source_head = avro_string(SOURCE_VERSION) + avro_string(CONNECTOR) + avro_string(hq_name)
        self._source_mid = avro_string(hq_name) + avro_string(schema) + avro_string(table)
        self._tails: dict[tuple[str, int, int, str], bytes] = {}

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
        key_bytes = self.codec.encode_key(self.topic, self.schemas.key, key)
        if self._row is not None and row is not None and op is not Op.DELETE:
            return key_bytes, frame(self.schemas.value.fingerprint,
                                    b"\x00\x02" + write_body(self._row, row) + self._tail(op, version, now, snapshot))
        env = self.envelope(op, key, row, version, now, snapshot)
        value = self.codec.encode_value(self.topic, self.schemas.value, env)
        assert value is not None
        return key_bytes, value

    def _tail(self, op: Op, version: int, now: int, snapshot: str) -> bytes:
        """The bytes after ``after``: ``source``, ``op`` and ``ts_ms``."""
        at = (op.value, version, now, snapshot)
        tail = self._tails.get(at)
        if tail is None:
            if len(self._tails) >= _TAILS_MAX:
                self._tails.clear()
            tail = self._tails[at] = (self._source_head + avro_long(now) + avro_string(_SNAPSHOTS[snapshot])
                                      + self._source_mid + avro_long(version) + avro_string(op.value)
                                      + avro_long(now))
        return tail
