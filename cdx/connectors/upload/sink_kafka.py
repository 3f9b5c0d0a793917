"""The HQ upload sink's source: every uploading channel's upload topic, one consumer group
(``<prefix>-hq-upload``, ``read_committed``; a :class:`cdx.stage.contract.Source`).

- Positions are Kafka offsets by ``<topic>/<partition>`` (the next offset to read). They live at HQ
  (:class:`~cdx.connectors.upload.sink_hq.HqTarget`): every partition assignment starts at the offset
  HQ holds (the beginning when none). Kafka's committed offsets are only written after HQ committed,
  asynchronously, for lag monitoring; they are read only when HQ cannot be.
- The group is joined once HQ answers (assignments read their offsets from it).
- ``rewind`` delivers the records polled since the last commit again, in order (the consumer's fetch
  position is right after them, so this is the same as seeking to HQ's offsets).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import OFFSET_STORED, Consumer, KafkaError, Message, TopicPartition

from cdx.cleanup import quietly
from cdx.connectors.upload.sink_catalog import Catalog
from cdx.errors import FatalError
from cdx.kafka.batches import next_batch
from cdx.kafka.config import consumer_config

log = logging.getLogger("cdx.upload.sink")


def offset_key(m: Message) -> str:
    """The key of ``m``'s partition among the stored offsets: ``<topic>/<partition>``."""
    return f"{m.topic()}/{m.partition() or 0}"


def offsets_after(records: Sequence[Message]) -> dict[str, str]:
    """``<topic>/<partition>`` -> the offset after the last of ``records`` on it."""
    return {offset_key(m): str((m.offset() or 0) + 1) for m in records}


class UploadTopics:
    """See the module docstring. ``stored_offsets`` reads the offsets HQ holds (raises when it cannot)."""

    def __init__(self, catalog: Catalog, base_config: dict[str, Any], group_id: str, options: Any,
                 stored_offsets: Callable[[], dict[str, str]]) -> None:
        self.catalog, self.base_config, self.group_id, self.options = catalog, base_config, group_id, options
        self.stored_offsets = stored_offsets
        self.consumer: Consumer | None = None
        self.subscribed = False
        self._cooperative = True
        self._pending: list[Message] = []
        self._again: list[Message] = []

    def create(self) -> None:
        """The consumer (static member with ``instance_id``; long poll interval: a batch may be retried
        while HQ is down)."""
        o = self.options
        extra: dict[str, Any] = {"session.timeout.ms": o.session_timeout_ms, "max.poll.interval.ms": 1_800_000,
                                 "heartbeat.interval.ms": max(1000, o.session_timeout_ms // 5)}
        if o.instance_id:
            extra["group.instance.id"] = o.instance_id
        config = {**consumer_config(self.base_config, self.group_id), **extra}
        self._cooperative = "cooperative" in str(config.get("partition.assignment.strategy", ""))
        self.consumer = Consumer(config)

    def open(self) -> None:
        if self.consumer is None:
            self.create()
        self.subscribe()

    def subscribe(self, again: bool = False) -> None:
        """Join the group on the catalog's upload topics (``again``: after a reload changed them)."""
        if self.consumer is None or (self.subscribed and not again):
            return
        if self.catalog.channels:
            self.consumer.subscribe(sorted(self.catalog.channels), on_assign=self._on_assign)
            self.subscribed = True
        elif self.subscribed:
            self.consumer.unsubscribe()
            self.subscribed = False

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Start every assigned partition at the offset stored in HQ (beginning if none)."""
        try:
            stored = self.stored_offsets()
            for tp in partitions:
                value = stored.get(f"{tp.topic}/{tp.partition}")
                tp.offset = int(value) if value is not None else -2  # OFFSET_BEGINNING
        except Exception as exc:
            log.warning("cannot read upload sink offsets from HQ (%s); using Kafka's committed offsets", exc)
            for tp in partitions:
                tp.offset = OFFSET_STORED
        log.info("assigned %s", ", ".join(f"{tp.topic}[{tp.partition}]@{tp.offset}" for tp in partitions))
        if self._cooperative:
            consumer.incremental_assign(partitions)
        else:
            consumer.assign(partitions)

    def poll(self, max_records: int, max_wait: float) -> Sequence[Message]:
        if self._again:  # after a rewind (records of a channel removed meanwhile are not ours any more)
            batch, self._again = self._again[:max_records], self._again[max_records:]
            batch = [m for m in batch if m.topic() in self.catalog.channels]
            self._pending += batch
            return batch
        assert self.consumer is not None
        batch = []
        for m in next_batch(self.consumer, max_records, max_wait):
            err = m.error()
            if err is None:
                batch.append(m)
            elif err.code() != KafkaError._PARTITION_EOF:
                if err.fatal() or err.code() == KafkaError._FATAL:  # the process must restart
                    raise FatalError(f"Kafka consumer failed: {err.str()}")
                log.warning("consumer: %s", err.str())
        self._pending += batch
        return batch

    def position(self, records: Sequence[Message]) -> dict[str, str]:
        return offsets_after(records)

    def committed(self, position: dict[str, str]) -> None:
        self._pending = [m for m in self._pending
                         if (m.offset() or 0) >= int(position.get(offset_key(m), -1))]
        consumer = self.consumer
        if consumer is not None:
            offsets = [TopicPartition(k.rsplit("/", 1)[0], int(k.rsplit("/", 1)[1]), int(v))
                       for k, v in position.items()]
            # monitoring only: HQ holds the offsets that count
            quietly(lambda: consumer.commit(offsets=offsets, asynchronous=True),
                    "HQ upload sink: committing monitoring offsets", log)

    def rewind(self) -> None:
        self._again = self._pending + self._again
        self._pending = []

    def close(self) -> None:
        if self.consumer is not None:
            quietly(self.consumer.close, "HQ upload sink: closing the consumer", log)
            self.consumer = None
