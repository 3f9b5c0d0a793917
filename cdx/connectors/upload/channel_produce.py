"""Producing one poll of a channel upload into the open Kafka transaction.

Contract (the caller has begun the transaction and commits or aborts it)
- Per table: a dead letter for each gap given up, then each new row on the channel's upload topic
  (keyed by table and counter, on the table's partition, with the subjob header and, for a joined
  extension, whether the extension row was there), then the table's new position.
- A row that cannot be encoded, or whose record is larger than ``max_message_bytes``, becomes a
  dead letter instead (kind ``channel-upload``) and is appended to ``dead`` for the caller to log
  after the commit.
"""

from __future__ import annotations

from dataclasses import dataclass

from cdx.codec import SingleObjectCodec
from cdx.codec.codec import Codec
from cdx.connectors.upload import guards, metrics
from cdx.connectors.upload.channel_read import Pending
from cdx.connectors.upload.records import (
    EXTENSION_HEADER,
    KEY_SCHEMA,
    SUBJOB_HEADER,
    KeyEncoder,
    dlq_record,
    upload_envelope,
)
from cdx.connectors.upload.source import SourceRow
from cdx.errors import SkippableError
from cdx.kafka.transactions import TransactionalProducer

__all__ = ["DeadRow", "UploadWriter"]

DeadRow = tuple[Pending, SourceRow, str]
"""A row dead-lettered instead of published: its table's work, the row, the reason."""


@dataclass
class UploadWriter:
    """Where and how one channel's upload records go (see the module docstring)."""

    channel: str
    producer: TransactionalProducer
    codec: Codec
    keys: KeyEncoder
    topic: str
    positions_topic: str
    dlq_topic: str
    max_message_bytes: int
    gap_timeout: float

    def produce(self, work: list[Pending], now: int, dead: list[DeadRow]) -> None:
        """Produce ``work`` (see the module docstring); ``dead`` is cleared first (a retried transaction)."""
        dead.clear()
        for p in work:
            table_name = str(p.table.source.table)
            for gap in p.timed_out:
                dkey, dvalue, dheaders = guards.gap_letter(self.channel, table_name, self.topic, gap, now,
                                                           self.gap_timeout)
                self.producer.produce(self.dlq_topic, dvalue, key=dkey, headers=dheaders)
                metrics.DEAD_LETTERS.labels(guards.GAP_KIND).inc()
            self._rows(p, table_name, now, dead)
            self.producer.produce(self.positions_topic, p.position.encode(), key=p.table.key.encode())

    def _rows(self, p: Pending, table_name: str, now: int, dead: list[DeadRow]) -> None:
        codec, producer, topic = self.codec, self.producer, self.topic
        t, src = p.table, p.table.source
        fast_keys = isinstance(codec, SingleObjectCodec)
        subjob_header = (SUBJOB_HEADER, t.subjob.id.encode())
        joined = src.ext_table is not None
        for row in p.rows:
            key = self.keys.encode(table_name, row.counter) if fast_keys else \
                codec.encode_key(topic, KEY_SCHEMA, {"table": table_name, "counter": row.counter})
            try:
                if row.error is not None:
                    raise SkippableError(row.error)
                value = codec.encode_value(topic, t.schemas.value, upload_envelope(
                    self.channel, src.table.schema, src.table.name, row.counter, row.values, now))
                too_big = guards.oversize_reason(len(key) + len(value or b""), self.max_message_bytes)
                if too_big is not None:
                    dkey, dvalue, headers = guards.oversize_letter(self.channel, table_name, topic, row.counter,
                                                                   too_big)
                    self._dead_letter(dkey, dvalue, headers, (p, row, too_big), dead)
                    continue
            except SkippableError as exc:
                dkey, dvalue, headers = dlq_record("upload", str(exc), channel=self.channel,
                                                   table=table_name, counter=row.counter, topic=topic,
                                                   row=row.values)
                self._dead_letter(dkey, dvalue, headers, (p, row, str(exc)), dead)
                continue
            headers = [subjob_header]
            if joined:
                headers.append((EXTENSION_HEADER, b"present" if row.extension_present else b"absent"))
            producer.produce(topic, value, key=key, partition=t.partition, headers=headers)

    def _dead_letter(self, key: bytes, value: bytes, headers: list[tuple[str, bytes]], row: DeadRow,
                     dead: list[DeadRow]) -> None:
        self.producer.produce(self.dlq_topic, value, key=key, headers=headers)
        metrics.DEAD_LETTERS.labels("channel-upload").inc()
        dead.append(row)
