"""The channel upload's decode and position records: one table's :class:`Pending` work as Kafka records.

The stage's target is :class:`cdx.kafka.txn_target.KafkaTxnTarget` (:func:`upload_target`:
``transactional.id`` = ``<prefix>-upload-<channel>``), which owns the transaction and the in-process
recovery of a lost producer; :class:`ChannelWriter` says what goes out.

Contract
- ``encode(pending)`` (the stage's ``decode``): the table's schemas first (only new ones, in a
  transaction of their own), then a dead letter for each gap given up, and each new row on the channel's
  upload topic (keyed by table and counter, on the table's partition, with the subjob header and, for a
  joined extension, whether the extension row was there). A row that cannot be encoded, or whose record
  is larger than ``max_message_bytes``, becomes a dead letter instead (kind ``channel-upload``).
- ``position_records(positions)``: the dead letters of work the loop refused (``refuse``), then each
  table's new position (compacted ``<prefix>._upload_positions``, key ``<channel>/<table>``).
- ``committed()`` (the target's ``on_commit``): metrics and log lines of what the transaction held; dead
  rows are logged only then.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cdx.codec import SingleObjectCodec
from cdx.codec.codec import Codec
from cdx.connectors.upload import guards, metrics
from cdx.connectors.upload.channel_read import Pending, Positions
from cdx.connectors.upload.plan import upload_positions_topic
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
from cdx.kafka.config import oversize_reason, producer_config, size_limited
from cdx.kafka.txn_target import KafkaTxnTarget, Outgoing
from cdx.stage.budget import FailureBudget
from cdx.topics import dlq_topic, schemas_topic, upload_topic

log = logging.getLogger("cdx.upload")

ROW_KIND = "channel-upload"
"""The metric label of rows dead-lettered by the channel upload."""


def upload_target(prefix: str, channel_id: str, base_config: Mapping[str, Any], max_message_bytes: int,
                  position_records: Callable[[Positions], Sequence[Outgoing]],
                  still_ours: Callable[[], bool] | None = None) -> KafkaTxnTarget[Positions]:
    """One channel's transactional target (lost producers: 10 within 600 s, then the upload stops)."""
    config = size_limited(producer_config(base_config, transactional_id=f"{prefix}-upload-{channel_id}",
                                          transaction_timeout_ms=120_000), max_message_bytes)
    return KafkaTxnTarget(f"channel {channel_id} upload", config, position_records, still_ours=still_ours,
                          budget=FailureBudget(f"channel {channel_id} upload: lost producers"),
                          schemas_topic=schemas_topic(prefix))


@dataclass
class Encoded:
    """One table's work as records (iterating gives what the target produces) and the rows dead-lettered."""

    pending: Pending
    out: list[Outgoing]
    dead: list[tuple[SourceRow, str]] = field(default_factory=list)

    def __iter__(self) -> Iterator[Outgoing]:
        return iter(self.out)


class ChannelWriter:
    """What one channel's upload writes into its Kafka transaction (see the module docstring)."""

    def __init__(self, target: KafkaTxnTarget[Positions], codec: Codec, channel_id: str, prefix: str,
                 max_message_bytes: int, gap_timeout: float) -> None:
        self.target, self.codec, self.channel_id = target, codec, channel_id
        self.max_message_bytes, self.gap_timeout = max_message_bytes, gap_timeout
        self.topic = upload_topic(prefix, channel_id)
        self.positions_topic = upload_positions_topic(prefix)
        self.dlq_topic = dlq_topic(prefix)
        self._keys = KeyEncoder()
        self._refused: list[Encoded] = []
        target.on_commit.append(self.committed)
        target.on_abort.append(self._refused.clear)

    def encode(self, p: Pending) -> Encoded:
        if isinstance(self.codec, SingleObjectCodec):
            self.target.publish([KEY_SCHEMA, p.table.schemas.value])
        now, table = int(time.time() * 1000), str(p.table.source.table)
        letters = [self._message(guards.gap_letter(self.channel_id, table, self.topic, gap, now, self.gap_timeout))
                   for gap in p.timed_out]
        enc = Encoded(p, [Outgoing(self.dlq_topic, letters), Outgoing(self.topic)])
        for row in p.rows:
            self._row(enc, table, row, now)
        return enc

    def _row(self, enc: Encoded, table: str, row: SourceRow, now: int) -> None:
        codec, t = self.codec, enc.pending.table
        src = t.source
        key = self._keys.encode(table, row.counter) if isinstance(codec, SingleObjectCodec) else \
            codec.encode_key(self.topic, KEY_SCHEMA, {"table": table, "counter": row.counter})
        try:
            if row.error is not None:
                raise SkippableError(row.error)
            value = codec.encode_value(self.topic, t.schemas.value, upload_envelope(
                self.channel_id, src.table.schema, src.table.name, row.counter, row.values, now))
        except SkippableError as exc:
            self._dead(enc, row, str(exc), dlq_record("upload", str(exc), channel=self.channel_id, table=table,
                                                      counter=row.counter, topic=self.topic, row=row.values))
            return
        too_big = oversize_reason(len(key) + len(value or b""), self.max_message_bytes)
        if too_big is not None:
            self._dead(enc, row, too_big, dlq_record("upload", too_big, channel=self.channel_id, table=table,
                                                     counter=row.counter, topic=self.topic, error_kind="oversize"))
            return
        headers = [(SUBJOB_HEADER, t.subjob.id.encode())]
        if src.ext_table is not None:
            headers.append((EXTENSION_HEADER, b"present" if row.extension_present else b"absent"))
        enc.out[1].messages.append({"key": key, "value": value, "partition": t.partition, "headers": headers})

    def _dead(self, enc: Encoded, row: SourceRow, reason: str, letter: guards.Letter) -> None:
        enc.out[0].messages.append(self._message(letter))
        enc.dead.append((row, reason))

    @staticmethod
    def _message(letter: guards.Letter) -> dict[str, Any]:
        key, value, headers = letter
        return {"key": key, "value": value, "headers": headers}

    def refuse(self, record: Pending, exc: SkippableError) -> None:
        """A table's work the loop isolated as unusable: its rows become dead letters of the next transaction."""
        for row in record.rows:
            row.error = row.error or exc.reason
        self._refused.append(self.encode(record))

    def positions(self, positions: Positions) -> Outgoing:
        return Outgoing(self.positions_topic, [{"key": key.encode(), "value": p.encode()}
                                               for key, p in positions.items()])

    def position_records(self, positions: Positions) -> list[Outgoing]:
        return [*(o for enc in self._refused for o in enc.out), self.positions(positions)]

    def committed(self) -> None:
        """After a commit: metrics and log lines of each table's work in it."""
        done, self._refused = [*self._refused, *self.target.items], []
        now = int(time.time() * 1000)
        for enc in done:
            self._account(enc, now)

    def _account(self, enc: Encoded, now: int) -> None:
        p, table, channel = enc.pending, str(enc.pending.table.source.table), self.channel_id
        if p.rows:
            metrics.ROWS.labels(channel, table).inc(len(p.rows))
        if p.late:
            metrics.LATE_ROWS.labels(channel, table).inc(p.late)
        for gap in p.closed:
            metrics.GAPS_SKIPPED.labels(channel, table).inc(gap.size)
            log.warning("channel %s, %s: counters %d..%d never appeared (rolled back or deleted; first seen %.1fs"
                        " ago): skipped", channel, table, gap.start, gap.end, (now - gap.first_seen_ms) / 1000)
        if p.timed_out:
            metrics.DEAD_LETTERS.labels(guards.GAP_KIND).inc(len(p.timed_out))
        for row, reason in enc.dead:
            metrics.DEAD_LETTERS.labels(ROW_KIND).inc()
            log.error("channel %s, %s counter %d sent to the dead-letter topic: %s", channel, table, row.counter,
                      reason)
        if p.position.halted:
            log.error("channel %s: %s", channel, p.position.halted)
