"""The capture stage's decode and position records: a :class:`~cdx.connectors.capture.tables.Unit` as Kafka records.

Contract
- ``encode(unit)`` (the stage's ``decode``) returns the unit's records for its table topic (a tombstone
  after each delete) and its dead letters. A record larger than ``max_message_bytes`` (less
  ``cdx.kafka.config.RECORD_OVERHEAD``) is not published: a dead letter (kind ``capture``: table, key, size,
  reason) goes to the dead-letter topic in the same transaction and the position moves on.
- New schemas of the unit's table are published first, in a short transaction of their own
  (:meth:`~cdx.kafka.txn_target.KafkaTxnTarget.publish`; not inside a long snapshot chunk's).
- ``position_records(position)`` gives the positions to store with the records (key ``<hqdb>/<table>``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from cdx.codec.codec import Codec
from cdx.codec.envelope import Op
from cdx.connectors.capture import metrics
from cdx.connectors.capture.positions import Position, encode_position, position_key
from cdx.connectors.capture.records import ChangeEncoder
from cdx.connectors.capture.tables import TableState, Unit
from cdx.kafka.config import oversize_reason
from cdx.kafka.txn_target import KafkaTxnTarget, Outgoing
from cdx.stage.letters import make_letter

log = logging.getLogger("cdx.capture")


@dataclass
class CaptureWriter:
    """What capture writes into its Kafka transaction (see the module docstring)."""

    target: KafkaTxnTarget[dict[str, Position]]
    codec: Codec
    hq_name: str
    positions_topic: str
    dlq_topic: str
    max_message_bytes: int

    def encode(self, unit: Unit) -> list[Outgoing]:
        table = unit.table
        assert table.schemas is not None
        self.target.publish([table.schemas.key, table.schemas.value])
        out, letters = Outgoing(table.topic), Outgoing(self.dlq_topic)
        encoder = self._encoder(table)
        for op, key, row, version, ts_ms, snapshot in unit.events:
            key_bytes, value_bytes = encoder.encode(op, key, row, version, ts_ms, snapshot)
            reason = oversize_reason(len(key_bytes) + len(value_bytes or b""), self.max_message_bytes)
            if reason is not None:
                letters.messages.append(self._dead_letter(table, key, reason))
                continue
            out.messages.append({"key": key_bytes, "value": value_bytes})
            if op is Op.DELETE:
                out.messages.append({"key": key_bytes, "value": None})
        return [out, letters]

    def position_records(self, position: dict[str, Position]) -> list[Outgoing]:
        return [Outgoing(self.positions_topic, [{"key": position_key(self.hq_name, name),
                                                 "value": encode_position(p.version, p.snapshot)}
                                                for name, p in position.items()])]

    def _encoder(self, table: TableState) -> ChangeEncoder:
        assert table.schemas is not None
        encoder = table.encoder
        if encoder is None or encoder.schemas is not table.schemas:
            encoder = table.encoder = ChangeEncoder(self.codec, table.topic, table.schemas, hq_name=self.hq_name,
                                                    schema=table.ref.schema or "", table=table.ref.name)
        return encoder

    def _dead_letter(self, table: TableState, key: dict[str, Any], reason: str) -> dict[str, Any]:
        """A change too large to publish: its dead letter (table, key, size, reason)."""
        dkey, dvalue, headers = make_letter("capture", reason, error_kind="oversize", table=table.name, key=key,
                                            extra={"topic": table.topic})
        metrics.DEAD_LETTERS.labels(table.name).inc()
        log.error("%s: change of key %s not published: %s", table.name, key, reason)
        return {"key": dkey, "value": dvalue, "headers": headers}
