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

Dead-letter records (``<prefix>._dlq``): the one format of :mod:`cdx.stage.letters`, built by
:func:`dlq_record` for the channel upload (component ``upload``), the HQ upload sink (``upload-sink``)
and the offline-register sync (``offline``): ``channel``, ``table``, ``key`` (``{"counter"}``),
``source`` (the upload record the HQ upload sink read, when there is one) and ``record`` (its bytes);
``extra``: ``counter``, ``topic`` (the topic the row was for, when it is not the source), ``row`` (the
row, JSON-safe).
"""

from __future__ import annotations

from typing import Any

from cdx.codec import AvroSchema
from cdx.codec.binary import avro_long, avro_string
from cdx.codec.envelope import Op, SourceInfo, make_envelope
from cdx.codec.single_object import MAGIC
from cdx.stage.letters import OriginRecord, Position, make_letter

CONNECTOR = "cdx-upload"
KEY_SCHEMA = AvroSchema.of({
    "type": "record", "name": "Key", "namespace": "cdx.upload",
    "fields": [{"name": "table", "type": "string"}, {"name": "counter", "type": "long"}],
})
SUBJOB_HEADER = "cdx.subjob"
EXTENSION_HEADER = "cdx.extension"


class KeyEncoder:
    """Single-object encoded upload keys, written directly (the same bytes ``SingleObjectCodec.encode_key``
    gives for :data:`KEY_SCHEMA`, several times faster): header and table are encoded once per table."""

    def __init__(self) -> None:
        self._prefix: dict[str, bytes] = {}

    def encode(self, table: str, counter: int) -> bytes:
        prefix = self._prefix.get(table)
        if prefix is None:
            prefix = self._prefix[table] = MAGIC + KEY_SCHEMA.fingerprint + avro_string(table)
        return prefix + avro_long(counter)


def value_namespace(prefix: str, hq_schema: str | None, hq_table: str) -> str:
    """Name the value schemas of an HQ upload table are registered under."""
    return f"{prefix}.upload.{hq_schema}.{hq_table}" if hq_schema else f"{prefix}.upload.{hq_table}"


def upload_envelope(channel_id: str, schema: str | None, table: str, counter: int, row: dict[str, Any],
                    now_ms: int) -> dict[str, Any]:
    source = SourceInfo(connector=CONNECTOR, name=channel_id, db=channel_id, schema=schema or "", table=table,
                        change_version=counter, ts_ms=now_ms)
    return make_envelope(Op.CREATE, after=row, source=source, ts_ms=now_ms)


def dlq_record(component: str, reason: str, *, channel: str | None = None, table: str | None = None,
               counter: int | None = None, topic: str | None = None, partition: int | None = None,
               offset: int | None = None, row: dict[str, Any] | None = None, value: bytes | None = None,
               key: bytes | None = None, error_kind: str = "skippable") -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """``(key, value, headers)`` of a dead letter of the upload side (see module docstring).

    ``topic``/``partition``/``offset`` with ``key``/``value``: the Kafka record the letter comes from;
    ``topic`` alone: the topic the row was for."""
    source = Position(topic, partition, offset) if topic and partition is not None and offset is not None else None
    extra: dict[str, Any] = {}
    if counter is not None:
        extra["counter"] = counter
    if topic and source is None:
        extra["topic"] = topic
    if row is not None:
        extra["row"] = row
    origin = OriginRecord(key, value) if key is not None or value is not None else None
    return make_letter(component, reason, error_kind=error_kind, channel=channel, table=table,
                       key={"counter": counter} if counter is not None else None,
                       source=source, record=origin, extra=extra)

