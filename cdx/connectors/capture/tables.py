"""The tables a capture connector polls: what it knows of each (``TableState``) and which ones a topology
asks for (``capture_tables``). Shared by the connector (``cdx.connectors.capture.connector``) and the
reload of a new topology revision (``cdx.connectors.capture.reload``)."""

from __future__ import annotations

from cdx.codec import TableSchemas
from cdx.connectors.capture.positions import Position
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

    @property
    def name(self) -> str:
        return str(self.ref)


def capture_tables(topology: Topology) -> list[TableState]:
    """The tables capture polls for ``topology``: every download subjob's HQ table not written by another
    capture (``source_topic``), one per topic."""
    out: dict[str, TableState] = {}
    for subjob in topology.download_subjobs():
        if subjob.source_topic is None:
            topic = topology.hq_table_topic(subjob)
            out.setdefault(topic, TableState(TableRef(subjob.hq_table.schema, subjob.hq_table.name), topic))
    return list(out.values())
