"""The tables a capture connector polls: what it knows of each (``TableState``) and which ones a topology
asks for (``capture_tables``). Shared by the connector (``cdx.connectors.capture.connector``) and the
reload of a new topology revision (``cdx.connectors.capture.reload``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cdx.codec import TableSchemas
from cdx.codec.envelope import Op
from cdx.connectors.capture.positions import Position, SnapshotProgress
from cdx.connectors.capture.records import ChangeEncoder
from cdx.connectors.capture.tracking import TableRef
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
    """One table's work for one Kafka transaction (the capture stage's source record): the changes (or
    snapshot rows) read, and the table's position after them. ``events`` may be empty (a quiet table's
    position moves on)."""

    table: TableState
    position: Position
    events: list[Event] = field(default_factory=list)
    snapshot: SnapshotProgress | None = None
    """The snapshot progress this unit's chunk was read after (None: streamed changes)."""
    done: bool = False
    """The last chunk of a snapshot."""
    request: str | None = None
    """The re-snapshot request this unit's chunk starts (cleared in HQ once committed)."""


def capture_tables(topology: Topology) -> list[TableState]:
    """The tables capture polls for ``topology``: every download subjob's HQ table not written by another
    capture (``source_topic``), one per topic."""
    out: dict[str, TableState] = {}
    for subjob in topology.download_subjobs():
        if subjob.source_topic is None:
            topic = topology.hq_table_topic(subjob)
            out.setdefault(topic, TableState(TableRef(subjob.hq_table.schema, subjob.hq_table.name), topic))
    return list(out.values())
