"""The channel upload's target: one Kafka transaction per poll, holding the rows and the positions.

:class:`UploadTransaction` is the stage's :class:`cdx.stage.contract.Target` (records: one table's
:class:`~cdx.connectors.upload.channel_read.Pending` work; position: each table's ``UploadPosition``):

- ``transactional.id`` = ``<prefix>-upload-<channel>``; ``open`` creates the producer (whose
  ``init_transactions`` completes or aborts what a predecessor left open) and reads the committed
  positions (compacted ``<prefix>._upload_positions``, key ``<channel>/<table>``, read_committed).
- ``write``, per table: a dead letter for each gap given up, then each new row on the channel's
  upload topic (keyed by table and counter, on the table's partition, with the subjob header and, for
  a joined extension, whether the extension row was there), then the table's new position. A row that
  cannot be encoded, or whose record is larger than ``max_message_bytes``, becomes a dead letter
  instead (kind ``channel-upload``), logged after the commit. Schemas a transaction needs go first, in
  a transaction of their own (a long data transaction of one channel then never hides a schema another
  channel's committed records need).
- After a failed transaction the producer is stale: ``prepare`` (between batches) reopens it and
  re-reads the positions, exactly as on a restart (a commit whose outcome is unknown may have
  committed). A lost producer (fenced, failed fatally) is the same with
  :class:`~cdx.connectors.upload.channel_recovery.ProducerRecovery` deciding whether this process may
  go on; it reaches the loop as a ``RetriableError``, or as a ``FatalError`` once the budget is spent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from confluent_kafka import KafkaException

from cdx.cleanup import quietly
from cdx.codec import SchemaPublisher, SchemaStore, SingleObjectCodec, make_codec
from cdx.codec.codec import Codec
from cdx.codec.schema import AvroSchema
from cdx.connectors.upload import guards, metrics
from cdx.connectors.upload.channel_read import Pending, Positions
from cdx.connectors.upload.channel_recovery import ProducerRecovery
from cdx.connectors.upload.plan import UploadOptions, load_upload_positions, upload_positions_topic
from cdx.connectors.upload.records import (
    EXTENSION_HEADER,
    KEY_SCHEMA,
    SUBJOB_HEADER,
    KeyEncoder,
    dlq_record,
    upload_envelope,
)
from cdx.connectors.upload.source import SourceRow
from cdx.errors import RetriableError, SkippableError
from cdx.kafka.admin import partitions_of
from cdx.kafka.config import producer_config, size_limited
from cdx.kafka.transactions import ProducerLost, TransactionalProducer, producer_lost
from cdx.topics import dlq_topic, schemas_topic, upload_topic
from cdx.topology import Topology

log = logging.getLogger("cdx.upload")

__all__ = ["UploadTransaction"]

DeadRow = tuple[Pending, SourceRow, str]
"""A row dead-lettered instead of published: its table's work, the row, the reason."""


class UploadTransaction:
    """See the module docstring. ``value_schemas`` gives the source's tables' value schemas."""

    def __init__(self, topology: Topology, channel_id: str, base_config: dict[str, Any], store: SchemaStore,
                 options: UploadOptions, recovery: ProducerRecovery,
                 value_schemas: Callable[[], list[AvroSchema]]) -> None:
        k = topology.kafka
        self.channel_id, self.base_config, self.store, self.options = channel_id, base_config, store, options
        self.recovery, self.value_schemas = recovery, value_schemas
        self.codec_config = k.codec_config()
        self.prefix, self.max_message_bytes = k.topic_prefix, k.max_message_bytes
        self.topic = upload_topic(self.prefix, channel_id)
        self.positions_topic = upload_positions_topic(self.prefix)
        self.dlq_topic = dlq_topic(self.prefix)
        self.producer: TransactionalProducer | None = None
        self.publisher: SchemaPublisher | None = None
        self.codec: Codec | None = None
        self.positions: Positions = {}
        self.partitions = 1
        self.stale = False
        self.reopens = 0
        """Producers reopened after a failed transaction (fenced, lost or an unknown outcome)."""
        self._keys = KeyEncoder()
        self._refused: list[Pending] = []
        self._written: list[Pending] = []
        self._dead: list[DeadRow] = []

    # ------------------------------------------------------------------ producer and positions
    def open(self) -> None:
        with self._kafka_errors():
            if self.producer is None:
                self.producer = TransactionalProducer(size_limited(producer_config(
                    self.base_config, transactional_id=f"{self.prefix}-upload-{self.channel_id}",
                    transaction_timeout_ms=120_000), self.max_message_bytes))
                self.publisher = SchemaPublisher(self.producer.producer, schemas_topic(self.prefix),
                                                 transactional=True)
                self.codec = make_codec(self.codec_config, store=self.store, publisher=self.publisher)
            self.partitions = max(1, len(partitions_of(self.base_config, self.topic)))
            self._read_positions()

    def _read_positions(self) -> None:
        mine = f"{self.channel_id}/"
        self.positions = {key: p for key, p in load_upload_positions(self.base_config, self.positions_topic).items()
                          if key.startswith(mine)}

    def prepare(self) -> None:
        """Between batches: after a failed transaction, reopen the producer (a new instance, the same
        ``transactional.id``) and re-read the committed positions."""
        if not self.stale:
            return
        with self._kafka_errors():
            self.recovery.confirm()
            assert self.producer is not None and self.publisher is not None
            self.producer.reopen()
            self.publisher.producer = self.producer.producer
            self.publisher.transaction_aborted()
            self._read_positions()
        self.stale = False
        self.reopens += 1
        if not self.recovery.recovered():
            log.info("channel %s: transactional producer reopened, positions re-read", self.channel_id)

    @contextmanager
    def _kafka_errors(self) -> Iterator[None]:
        """Kafka trouble as ``RetriableError`` (the producer is then stale); a lost producer is counted
        against the budget first (``FatalError`` once spent)."""
        try:
            yield
        except (ProducerLost, RetriableError, KafkaException, TimeoutError, BufferError) as exc:
            self.stale = True
            if not any(producer_lost(e) for e in (exc, exc.__cause__) if e is not None):
                if isinstance(exc, RetriableError):
                    raise
                raise RetriableError(f"Kafka: {exc}") from exc
            lost = self.recovery.lost(exc)
            raise RetriableError(f"upload producer lost ({exc}); recovering: producer reopened, positions re-read"
                                 f" from what is committed ({lost} lost within {self.recovery.budget.window:.0f} s)"
                                 ) from exc

    # ------------------------------------------------------------------ one transaction
    def transaction(self, work: Callable[[TransactionalProducer], object]) -> None:
        """``work(producer)`` in a transaction of its own (schemas, restarted positions)."""
        producer = self._producer()
        with self._kafka_errors():
            producer.begin()
            try:
                work(producer)
                producer.commit()
            except BaseException:
                self._abort()
                raise
            self._ended(committed=True)

    def begin(self, schemas: bool = True) -> None:
        if schemas:
            self._publish_schemas()
        with self._kafka_errors():
            self._producer().begin()

    def _publish_schemas(self) -> None:
        publisher = self.publisher
        if not isinstance(self.codec, SingleObjectCodec) or publisher is None:
            return
        schemas = [KEY_SCHEMA, *self.value_schemas()]
        if len(schemas) > 1 and not all(s.fingerprint_hex in publisher.published for s in schemas):
            self.transaction(lambda _p: [publisher.publish(s) for s in schemas])

    def write(self, items: Sequence[Pending], position: Positions) -> None:
        """The rows of ``items`` (and of any table ``refuse`` held: dead letters) with their positions."""
        work, now, producer = [*self._refused, *items], int(time.time() * 1000), self._producer()
        self._dead.clear()
        with self._kafka_errors():
            for p in work:
                table = str(p.table.source.table)
                for gap in p.timed_out:
                    self._letter(guards.gap_letter(self.channel_id, table, self.topic, gap, now,
                                                   self.options.gap_timeout), guards.GAP_KIND)
                for row in p.rows:
                    self._row(p, table, row, now)
                producer.produce(self.positions_topic, p.position.encode(), key=p.table.key.encode())
        self._written = work

    def _row(self, p: Pending, table: str, row: SourceRow, now: int) -> None:
        codec, t, src = self.codec, p.table, p.table.source
        assert codec is not None
        key = self._keys.encode(table, row.counter) if isinstance(codec, SingleObjectCodec) else \
            codec.encode_key(self.topic, KEY_SCHEMA, {"table": table, "counter": row.counter})
        try:
            if row.error is not None:
                raise SkippableError(row.error)
            value = codec.encode_value(self.topic, t.schemas.value, upload_envelope(
                self.channel_id, src.table.schema, src.table.name, row.counter, row.values, now))
        except SkippableError as exc:
            self._letter(dlq_record("upload", str(exc), channel=self.channel_id, table=table, counter=row.counter,
                                    topic=self.topic, row=row.values), "channel-upload")
            self._dead.append((p, row, str(exc)))
            return
        too_big = guards.oversize_reason(len(key) + len(value or b""), self.max_message_bytes)
        if too_big is not None:
            self._letter(guards.oversize_letter(self.channel_id, table, self.topic, row.counter, too_big),
                         "channel-upload")
            self._dead.append((p, row, too_big))
            return
        headers = [(SUBJOB_HEADER, t.subjob.id.encode())]
        if src.ext_table is not None:
            headers.append((EXTENSION_HEADER, b"present" if row.extension_present else b"absent"))
        self._producer().produce(self.topic, value, key=key, partition=t.partition, headers=headers)

    def _letter(self, letter: tuple[bytes, bytes, list[tuple[str, bytes]]], kind: str) -> None:
        key, value, headers = letter
        self._producer().produce(self.dlq_topic, value, key=key, headers=headers)
        metrics.DEAD_LETTERS.labels(kind).inc()

    def refuse(self, record: Pending, exc: SkippableError) -> None:
        """A table's work the loop isolated as unusable: its rows become dead letters of the next ``write``."""
        for row in record.rows:
            row.error = row.error or exc.reason
        self._refused.append(record)

    def commit(self) -> None:
        with self._kafka_errors():
            self._producer().commit()
        self._ended(committed=True)
        written, self._written, self._refused = self._written, [], []
        now = int(time.time() * 1000)
        for p in written:
            self._account(p, now)
        for p, row, reason in self._dead:
            log.error("channel %s, %s counter %d sent to the dead-letter topic: %s", self.channel_id,
                      p.table.source.table, row.counter, reason)
        self._dead.clear()

    def _account(self, p: Pending, now: int) -> None:
        """After the commit: metrics and log lines of one table's work."""
        table = str(p.table.source.table)
        if p.rows:
            metrics.ROWS.labels(self.channel_id, table).inc(len(p.rows))
        if p.late:
            metrics.LATE_ROWS.labels(self.channel_id, table).inc(p.late)
        for gap in p.closed:
            metrics.GAPS_SKIPPED.labels(self.channel_id, table).inc(gap.size)
            log.warning("channel %s, %s: counters %d..%d never appeared (rolled back or deleted; first seen %.1fs"
                        " ago): skipped", self.channel_id, table, gap.start, gap.end, (now - gap.first_seen_ms) / 1000)
        if p.position.halted:
            log.error("channel %s: %s", self.channel_id, p.position.halted)

    def abort(self, error: BaseException | None = None) -> None:
        self._written, self._refused = [], []
        self._dead.clear()
        if self.producer is not None and self.producer.in_transaction:
            if not isinstance(error, SkippableError):
                self.stale = True  # the outcome of a failed commit is unknown: positions are re-read
            self._abort()

    def _abort(self) -> None:
        assert self.producer is not None
        quietly(self.producer.abort, "upload: aborting the transaction", log)
        self._ended(committed=False)

    def _ended(self, committed: bool) -> None:
        (metrics.TRANSACTIONS if committed else metrics.ABORTS).labels(self.channel_id).inc()
        if self.publisher is not None:
            (self.publisher.transaction_committed if committed else self.publisher.transaction_aborted)()

    def _producer(self) -> TransactionalProducer:
        assert self.producer is not None, "open() first"
        return self.producer

    def close(self) -> None:
        if self.producer is not None:
            quietly(self.producer.close, "upload: closing the producer", log)
            self.producer = None
