"""The part of ``ChannelSink`` that obeys ``cdx channel pause`` and the distribution schedules (``gate``).

Between two batches the sink refreshes its ``Gate``; each consumed batch is cut at the first held-back
record of each partition, which is then positioned at that record and paused (``held``); when the gate
changes (resume, a window opens, a release), the held partitions are resumed from their held records.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

from cdx.connectors.sink.gate import Gate
from cdx.connectors.sink.records import Record
from cdx.connectors.sink.spec import SinkSpec

log = logging.getLogger("cdx.sink")


class GatedSink:
    """Mixin of ``ChannelSink`` (which sets these attributes and provides ``_seek``)."""

    gate: Gate | None
    held: dict[int, int]
    """Partitions stopped at a held-back record: partition -> its offset."""
    conn: Any
    consumer: Consumer | None
    spec: SinkSpec
    status: str

    @property
    def name(self) -> str:
        return self.spec.owner_id

    def _seek(self, offsets: Mapping[int, int]) -> None:
        raise NotImplementedError

    def _refresh_gate(self) -> None:
        """Between batches: re-read pause and schedules; a change lets held partitions be read again."""
        if self.gate is None or self.conn is None:
            return
        try:
            changed = self.gate.refresh(self.conn, self.consumer)
        except Exception as e:  # the next batch deals with a database that went away
            log.debug("sink %s: cannot read the controls: %s", self.name, e)
            return
        if changed and self.held and self.consumer is not None:
            held, self.held = self.held, {}
            self._pause_partitions(held, resume=True)
            self._seek(held)  # read them again from their held records (deferred if it cannot be done yet)
        self.status = "paused" if self.gate.paused else ("running" if self.status == "paused" else self.status)

    def _paused(self, *, refresh: bool = False) -> bool:
        """Whether ``cdx channel pause`` holds this database (``refresh``: read it now)."""
        if self.gate is None:
            return False
        if refresh:
            self.gate.refresh(self.conn, None, force=True)
        return self.gate.paused

    def _cut(self, records: list[Record]) -> list[Record]:
        """The records the gate lets through; the partitions it holds stop at their held record."""
        if self.gate is None:
            return records
        out, held = self.gate.cut(records)
        if held and self.consumer is not None:
            self.held.update(held)
            self._seek(held)  # position them at their held records (deferred if it cannot be done yet)
            self._pause_partitions(held)
        return out

    def _pause_partitions(self, partitions: Mapping[int, int], *, resume: bool = False) -> None:
        assert self.consumer is not None
        parts = [TopicPartition(self.spec.topic, p) for p in partitions]
        try:
            (self.consumer.resume if resume else self.consumer.pause)(parts)
        except KafkaException as e:  # their records are discarded by _poll meanwhile (self.held)
            log.debug("sink %s: %s %s: %s", self.name, "resume" if resume else "pause", sorted(partitions), e)
