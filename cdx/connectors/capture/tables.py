"""The tables a capture connector polls: what it knows of each (``TableState``) and which ones a topology
asks for (``capture_tables``). Shared by the connector (``cdx.connectors.capture.connector``) and the
reload of a new topology revision (``CaptureConnector.reload``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cdx.codec import TableSchemas
from cdx.codec.envelope import Op
from cdx.connectors.capture.positions import Position, SnapshotProgress
from cdx.connectors.capture.records import ChangeEncoder
from cdx.connectors.capture.tracking import TableRef
from cdx.kafka.admin import COMPACTED, TopicSpec, max_message_config
from cdx.topology.root import Topology


class TableState:
    """What the connector knows of one tracked table."""

    def __init__(self, ref: TableRef, topic: str) -> None:
        self.ref = ref
        self.topic = topic
        self.schemas: TableSchemas | None = None
        self.encoder: ChangeEncoder | None = None
        self.fields: frozenset[str] = frozenset()
        self.position: Position | None = None
        self.position_written_at = 0.0
        self.checked = -1  # version read up to (the committed position lags it while the table is quiet)
        self.requested: str | None = None
        """A re-snapshot request (``cdx capture resnapshot``) not taken yet: its value in HQ."""

    @property
    def name(self) -> str:
        return str(self.ref)


Event = tuple[Op, dict[str, Any], dict[str, Any] | None, int, int, str]
"""One change to publish: op, key, row (None for a delete), change version, ``ts_ms``, snapshot flag."""


@dataclass
class Unit:
    """One table's work in a Kafka transaction (the capture stage's source record): the changes read
    (none: a quiet table's position moves on) and the table's position after them; for a snapshot chunk,
    the progress it was read after, whether it is the last one and the re-snapshot request it starts."""

    table: TableState
    position: Position
    events: list[Event] = field(default_factory=list)
    snapshot: SnapshotProgress | None = None
    done: bool = False
    request: str | None = None


def table_specs(topology: Topology, tables: list[TableState]) -> list[TopicSpec]:
    """The table topics: compacted, ``max.message.bytes`` = ``kafka.max_message_bytes``."""
    k = topology.kafka
    config = {**COMPACTED, **max_message_config(k.max_message_bytes)}
    return [TopicSpec(t.topic, k.default_partitions, k.replication_factor, config) for t in tables]


def capture_tables(topology: Topology) -> list[TableState]:
    """The tables capture polls for ``topology``: every download subjob's HQ table not written by another
    capture (``source_topic``), one per topic."""
    out: dict[str, TableState] = {}
    for subjob in topology.download_subjobs():
        if subjob.source_topic is None:
            topic = topology.hq_table_topic(subjob)
            out.setdefault(topic, TableState(TableRef(subjob.hq_table.schema, subjob.hq_table.name), topic))
    return list(out.values())
