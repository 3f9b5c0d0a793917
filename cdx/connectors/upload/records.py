"""Upload records on ``<prefix>.upload.<channel-id>`` and dead-letter records.

- **Key**: Avro record ``cdx.upload.Key`` ``{table: string, counter: long}``: the channel table
  the row was read from (``ax.RETAILTRANSACTIONTABLE``) and its replication counter.
- **Partition**: murmur2 of the table name, so all rows of one table are on one partition, in
  counter order (one topic per channel).
- **Value**: a change envelope (op ``c``) whose ``after`` is the row under HQ column names (the
  subjob's fields, ``DATAAREAID`` when the table has it, the extension's fields);
  ``source.name``/``source.db`` = the channel id, ``source.schema``/``source.table`` = the channel
  table, ``source.change_version`` = the counter. Value schemas are named ``<prefix>.upload.<hq table>``.
- **Headers**: ``cdx.subjob`` (the subjob id) and, for a joined extension, ``cdx.extension``
  = ``present`` / ``absent`` (absent: the HQ sink leaves the extension columns to their defaults).

Dead-letter records (``<prefix>._dlq``, the same shape as the channel sinks' dead letters): key =
the channel id; value = JSON ``{"channel", "kind", "topic", "partition", "offset", "table",
"counter", "error", "ts_ms", "row", "record": {"key_b64", "value_b64"}}`` (``kind``: ``channel-upload``,
``hq-upload-sink`` or ``offline-sync``; ``row`` the row with JSON-safe values when known;
``record`` the original Kafka bytes when there were any); headers ``cdx.channel``,
``cdx.table``, ``cdx.error`` (first 1,000 characters), ``cdx.kind``, ``cdx.upload.counter``.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from decimal import Decimal
from typing import Any

from cdx.codec import AvroSchema
from cdx.codec.envelope import Op, SourceInfo, make_envelope
from cdx.codec.single_object import MAGIC

CONNECTOR = "cdx-upload"
KEY_SCHEMA = AvroSchema.of({
    "type": "record", "name": "Key", "namespace": "cdx.upload",
    "fields": [{"name": "table", "type": "string"}, {"name": "counter", "type": "long"}],
})
SUBJOB_HEADER = "cdx.subjob"
EXTENSION_HEADER = "cdx.extension"


def _long(n: int) -> bytes:
    """Avro ``long``: zig-zag, then base-128 varint."""
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


class KeyEncoder:
    """Single-object encoded upload keys, written directly (the same bytes ``SingleObjectCodec.encode_key``
    gives for :data:`KEY_SCHEMA`, several times faster): header and table are encoded once per table."""

    def __init__(self) -> None:
        self._prefix: dict[str, bytes] = {}

    def encode(self, table: str, counter: int) -> bytes:
        prefix = self._prefix.get(table)
        if prefix is None:
            raw = table.encode()
            prefix = self._prefix[table] = MAGIC + KEY_SCHEMA.fingerprint + _long(len(raw)) + raw
        return prefix + _long(counter)


def value_namespace(prefix: str, hq_schema: str | None, hq_table: str) -> str:
    """Name the value schemas of an HQ upload table are registered under."""
    return f"{prefix}.upload.{hq_schema}.{hq_table}" if hq_schema else f"{prefix}.upload.{hq_table}"


def upload_envelope(channel_id: str, schema: str | None, table: str, counter: int, row: dict[str, Any],
                    now_ms: int) -> dict[str, Any]:
    source = SourceInfo(connector=CONNECTOR, name=channel_id, db=channel_id, schema=schema or "", table=table,
                        change_version=counter, ts_ms=now_ms)
    return make_envelope(Op.CREATE, after=row, source=source, ts_ms=now_ms)


def _json_value(v: Any) -> Any:
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, dt.datetime | dt.date):
        return v.isoformat()
    if isinstance(v, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(v)).decode()
    if v is None or isinstance(v, bool | int | float | str):
        return v
    if isinstance(v, dict):
        return {str(k): _json_value(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_json_value(x) for x in v]
    return str(v)


def dlq_record(component: str, reason: str, *, channel: str | None = None, table: str | None = None,
               counter: int | None = None, topic: str | None = None, partition: int | None = None,
               offset: int | None = None, row: dict[str, Any] | None = None, value: bytes | None = None,
               key: bytes | None = None) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """``(key, value, headers)`` of a dead-letter record (see module docstring)."""
    body: dict[str, Any] = {
        "channel": channel, "kind": component, "topic": topic, "partition": partition, "offset": offset,
        "table": table, "counter": counter, "error": reason,
        "ts_ms": int(dt.datetime.now(dt.UTC).timestamp() * 1000),
        "row": {k: _json_value(v) for k, v in row.items()} if row is not None else None,
        "record": {"key_b64": base64.b64encode(key).decode() if key is not None else None,
                   "value_b64": base64.b64encode(value).decode() if value is not None else None},
    }
    headers = [("cdx.channel", (channel or "").encode()), ("cdx.table", (table or "").encode()),
               ("cdx.error", reason[:1000].encode()), ("cdx.kind", component.encode()),
               ("cdx.upload.counter", str(counter if counter is not None else "").encode())]
    return (channel or "").encode(), json.dumps(body, ensure_ascii=False).encode(), headers


def produce_and_flush(producer: Any, topic: str, records: list[tuple[bytes, bytes, list[tuple[str, bytes]]]],
                      timeout: float = 30.0) -> None:
    """Produce dead letters with a plain producer and wait for every acknowledgement
    (``RetriableError`` if the broker does not take them all)."""
    from confluent_kafka import KafkaException

    from cdx.errors import RetriableError

    errors: list[str] = []

    def delivered(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(str(err))

    try:
        for key, value, headers in records:
            while True:
                try:
                    producer.produce(topic, value, key=key, headers=headers, on_delivery=delivered)
                    break
                except BufferError:
                    producer.poll(0.1)
        left = producer.flush(timeout)
    except KafkaException as exc:
        raise RetriableError(f"dead-letter topic {topic}: {exc}") from exc
    if left or errors:
        raise RetriableError(f"dead-letter topic {topic} did not take {len(records)} records: {errors[:3]}")
