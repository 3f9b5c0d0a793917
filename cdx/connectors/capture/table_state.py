"""What the capture connector knows of one tracked HQ table (:class:`TableState`)."""

from __future__ import annotations

from cdx.codec import TableSchemas
from cdx.connectors.capture.positions import Position
from cdx.connectors.capture.records import ChangeEncoder
from cdx.connectors.capture.tracking import TableRef

__all__ = ["TableState"]


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
