"""Producing capture records into the connector's Kafka transaction.

Contract
- ``transaction(work)`` runs ``work`` in one Kafka transaction (begin, commit; abort on any error,
  and the schema publisher learns which).
- ``change`` encodes one change into a batch (its record, and a tombstone after a delete); ``flush``
  produces the batch on the table's topic; ``position`` the table's new position. A record larger
  than ``max_message_bytes`` (less ``RECORD_OVERHEAD``) is not batched: a dead letter (kind
  ``capture``: table, key, size, reason) goes to the dead-letter topic in the same transaction.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cdx.codec import SchemaPublisher
from cdx.codec.codec import Codec
from cdx.codec.envelope import Op
from cdx.connectors.capture import metrics
from cdx.connectors.capture.positions import SnapshotProgress, encode_position, position_key
from cdx.connectors.capture.records import ChangeEncoder
from cdx.connectors.capture.tables import TableState
from cdx.connectors.upload.records import dlq_record
from cdx.kafka.transactions import TransactionalProducer

__all__ = ["RECORD_OVERHEAD", "CaptureWriter"]

log = logging.getLogger("cdx.capture")

RECORD_OVERHEAD = 1024
"""Bytes kept free below ``max_message_bytes`` for the record and batch headers."""


@dataclass
class CaptureWriter:
    """The transactional producer of one HQ database's capture, and where its records go."""

    producer: TransactionalProducer
    publisher: SchemaPublisher
    codec: Codec
    hq_name: str
    positions_topic: str
    dlq_topic: str
    max_message_bytes: int

    def change(self, table: TableState, op: Op, key: dict[str, Any], row: dict[str, Any] | None,
               version: int, now: int, out: list[dict[str, Any]], snapshot: str = "false") -> None:
        """Encode one change into ``out`` (its record, and a tombstone after a delete); ``flush`` produces them."""
        assert table.schemas is not None
        encoder = table.encoder
        if encoder is None or encoder.schemas is not table.schemas:
            encoder = table.encoder = ChangeEncoder(self.codec, table.topic, table.schemas, hq_name=self.hq_name,
                                                    schema=table.ref.schema or "", table=table.ref.name)
        key_bytes, value_bytes = encoder.encode(op, key, row, version, now, snapshot)
        size = len(key_bytes) + len(value_bytes or b"")
        if size + RECORD_OVERHEAD > self.max_message_bytes:
            self._dead_letter(table, key, size)
            return
        out.append({"key": key_bytes, "value": value_bytes})
        if op is Op.DELETE:
            out.append({"key": key_bytes, "value": None})

    def flush(self, table: TableState, out: list[dict[str, Any]]) -> None:
        self.producer.produce_many(table.topic, out)

    def _dead_letter(self, table: TableState, key: dict[str, Any], size: int) -> None:
        """A change too large to publish: a dead letter (table, key, size, reason) in the same transaction."""
        reason = (f"record of {size:,} bytes exceeds kafka.max_message_bytes ({self.max_message_bytes:,} bytes,"
                  f" less {RECORD_OVERHEAD} for headers); raise the setting or shrink the row")
        dkey, dvalue, headers = dlq_record("capture", reason, error_kind="oversize", table=table.name,
                                           topic=table.topic, row=key)
        self.producer.produce(self.dlq_topic, dvalue, key=dkey, headers=headers)
        metrics.DEAD_LETTERS.labels(table.name).inc()
        log.error("%s: change of key %s not published: %s", table.name, key, reason)

    def position(self, table: TableState, version: int, snapshot: SnapshotProgress | None = None) -> None:
        self.producer.produce(self.positions_topic, encode_position(version, snapshot),
                              key=position_key(self.hq_name, table.name))
        table.position_written_at = time.monotonic()

    def transaction(self, work: Callable[[], object]) -> None:
        self.producer.begin()
        try:
            work()
            self.producer.commit()
        except BaseException:
            metrics.ABORTS.inc()
            try:
                self.producer.abort()
            finally:
                self.publisher.transaction_aborted()
            raise
        self.publisher.transaction_committed()
        metrics.TRANSACTIONS.inc()
