"""The part of ``ChannelSink`` that obeys ``cdx channel pause`` and the distribution schedules (``gate``).

Between two batches the sink refreshes its ``Gate``; each batch is cut at the first held-back record
of each partition: the sink's position there goes back to that record and the partition is left out
of what it wants from the shared consumer (``held``; its later records still in the inbox are
dropped). When the gate changes (resume, a window opens, a release), the held partitions are wanted
again from their held records (the feed re-positions them).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Mapping
from typing import Any

from confluent_kafka import Message

from cdx.connectors.sink.gate import Gate
from cdx.connectors.sink.kafkaops import watermarks
from cdx.connectors.sink.records import Record
from cdx.connectors.sink.spec import SinkSpec

log = logging.getLogger("cdx.sink")


class GatedSink:
    """Mixin of ``ChannelSink`` (which sets these attributes)."""

    gate: Gate | None
    held: dict[int, int]
    """Partitions stopped at a held-back record: partition -> its offset."""
    conn: Any
    spec: SinkSpec
    status: str
    kafka_config: dict[str, Any]
    _mu: threading.Lock
    _inbox: deque[Message | Record]
    _next: dict[int, int]

    @property
    def name(self) -> str:
        return self.spec.owner_id

    def _end_offsets(self) -> Mapping[int, int]:
        return watermarks(self.kafka_config, self.spec.topic)[1]

    def _refresh_gate(self, *, force: bool = False) -> None:
        """Between batches: re-read pause and schedules; a change lets held partitions be read again."""
        if self.gate is None or self.conn is None:
            return
        try:
            changed = self.gate.refresh(self.conn, self._end_offsets, force=force)
        except Exception as e:  # the next batch deals with a database that went away
            log.debug("sink %s: cannot read the controls: %s", self.name, e)
            return
        if changed and self.held:
            with self._mu:
                self._next.update(self.held)  # read them again from their held records
                self.held.clear()
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
        if held:
            with self._mu:
                self.held.update(held)
                self._next.update(held)
                self._inbox = deque(m for m in self._inbox
                                    if (m.partition if isinstance(m, Record) else m.partition()) not in held)
        return out
