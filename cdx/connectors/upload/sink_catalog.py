"""What the HQ upload sink knows of the topology: upload topics by channel, upload subjobs and their
HQ tables (introspected once HQ answers). One ``Catalog`` is shared by the sink's source, decoder and
target; a topology reload replaces its contents between two batches (:meth:`Catalog.take`)."""

from __future__ import annotations

import logging
from typing import Any

from cdx.connectors.upload.plan import upload_subjobs_for, uploading_channels
from cdx.connectors.upload.source import counter_hq_name, source_table
from cdx.dialects import ColumnInfo, Connection, key_columns
from cdx.errors import ConfigError
from cdx.topics import upload_topic
from cdx.topology import Subjob, TableRef, Topology

log = logging.getLogger("cdx.upload.sink")

ORIGIN_COLUMN = "CDXORIGINID"
"""HQ column holding the id of the channel a row was uploaded from (optional but recommended:
with the counter it makes (channel, counter) unique)."""


class HqTable:
    """An upload subjob's HQ table, introspected: columns, primary key, origin and counter columns."""

    def __init__(self, subjob: Subjob, conn: Connection, dialect: Any) -> None:
        self.subjob = subjob
        self.ref: TableRef = subjob.hq_table
        self.name = str(self.ref)
        self.job = subjob.scheduled_by[0]
        cols = dialect.introspect_columns(conn, self.ref.schema, self.ref.name)
        self.columns: dict[str, ColumnInfo] = {c.name.casefold(): c for c in cols}
        self.key = key_columns(cols)
        missing = [f.name for f in subjob.all_fields() if f.name.casefold() not in self.columns]
        if missing:
            raise ConfigError(f"HQ table {self.name} lacks the columns {missing} of upload subjob {subjob.id}; "
                              "add them or fix the subjob's fields")
        origin = self.columns.get(ORIGIN_COLUMN.casefold())
        self.origin = origin.name if origin else None
        self.counter = self.columns[counter_hq_name(subjob).casefold()].name
        ext = subjob.extension
        self.extension_fields = {f.name.casefold() for f in ext.fields} if ext and not ext.override_target else set()
        if self.origin is None:
            log.warning("HQ table %s has no %s column: duplicates are recognised by primary key only", self.name,
                        ORIGIN_COLUMN)


class Catalog:
    """Upload topics -> channel ids, upload subjobs (by id and by the channel table they read), their
    HQ tables (empty until :meth:`introspect` ran) and the decoder's per-layout plans."""

    def __init__(self, topology: Topology) -> None:
        self.take(topology)

    def take(self, topology: Topology, tables: dict[str, HqTable] | None = None) -> None:
        """Describe ``topology`` (``tables``: its HQ tables, already introspected)."""
        prefix = topology.kafka.topic_prefix
        channels = uploading_channels(topology)
        self.topology = topology
        self.channels: dict[str, str] = {upload_topic(prefix, c.id): c.id for c in channels}
        self.subjobs: dict[str, Subjob] = {s.id.casefold(): s for c in channels
                                           for s in upload_subjobs_for(topology, c.id)}
        self.by_source: dict[str, Subjob] = {str(source_table(s)).casefold(): s for s in self.subjobs.values()}
        self.tables: dict[str, HqTable] = tables or {}
        self.plans: dict[tuple[str, bool, tuple[str, ...]], list[tuple[str, str, bool]]] = {}

    def introspect(self, conn: Connection, dialect: Any) -> dict[str, HqTable]:
        """Every upload subjob's HQ table (``ConfigError`` when one does not fit its subjob)."""
        return {key: HqTable(s, conn, dialect) for key, s in self.subjobs.items()}
