"""A running ``UploadConnector`` takes a new topology revision (``cdx.topology.live``), between two
transactions of each channel.

- A new uploading channel (or a channel that starts uploading): its upload topic is created and
  its uploader starts (from its committed positions: none yet, so from its tables' first rows).
- A channel no longer uploading or no longer in the topology: its uploader finishes its current
  transaction and stops (only when this process serves every channel; see below).
- A channel whose upload subjobs or database changed: its uploader stops after its transaction and
  starts again with them, from the positions committed with its last transaction (a new upload
  table starts at its first row): nothing is published twice, nothing skipped.
- Other channels are not touched.

Refused (``ConfigError``, nothing changed) when a channel the process was started for
(``--channel``) is not uploading in the new revision: the operator stops that process.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from confluent_kafka import Consumer

from cdx.codec import SchemaStore
from cdx.connectors.upload.plan import UploadOptions, upload_subjobs_for, uploading_channels
from cdx.connectors.upload.sink_catalog import Catalog
from cdx.connectors.upload.source import db_error
from cdx.dialects import Connection, Dialect
from cdx.errors import CdxError, RetriableError
from cdx.kafka.admin import TopicSpec, ensure_topics, max_message_config
from cdx.topics import upload_topic
from cdx.topology import Subjob, Topology
from cdx.topology.live import LiveTopology
from cdx.topology.model import Channel

log = logging.getLogger("cdx.upload")

# The reloads see their owners through the protocols below and get what they build (an uploader, an HQ
# table, the channels to sync) as a callable from them: the owners import this module, this module
# imports none of them.


class ChannelWorker(Protocol):
    """One channel's thread: a ``ChannelUploader`` (``uploader``) or a ``ChannelOfflineSync`` (``offline``)."""

    @property
    def channel(self) -> Channel: ...

    @property
    def subjobs(self) -> list[Subjob]: ...

    @property
    def _stop(self) -> threading.Event: ...


class Uploader(ChannelWorker, Protocol):
    @property
    def id(self) -> str: ...


U = TypeVar("U", bound=Uploader)
W = TypeVar("W", bound=ChannelWorker)
T = TypeVar("T")


class UploadConnectorState(Protocol[U]):
    """What ``reload_connector`` uses of an ``UploadConnector`` (``cdx.connectors.upload.uploader``)."""

    topology: Topology
    channels: list[Channel]
    uploaders: list[U]

    @property
    def requested(self) -> list[str] | None: ...

    @property
    def base_config(self) -> dict[str, Any]: ...

    @property
    def threads(self) -> dict[str, threading.Thread]: ...

    @property
    def store(self) -> SchemaStore | None: ...

    @property
    def options(self) -> UploadOptions: ...

    @property
    def live(self) -> LiveTopology | None: ...

    def start(self, uploader: U) -> None:
        """Run ``uploader`` in a thread of its own."""


NewUploader = Callable[[Topology, Channel, SchemaStore, UploadOptions, threading.Event], U]
"""Builds a channel's uploader: ``ChannelUploader``."""


class HqSide(Protocol):
    """The HQ upload sink's target as its reload sees it: the HQ connection (None until connected)."""

    @property
    def conn(self) -> Connection | None: ...


class UploadTopicsSide(Protocol):
    """The HQ upload sink's source as its reload sees it: its consumer and a way to subscribe again."""

    @property
    def consumer(self) -> Consumer | None: ...

    def subscribe(self, again: bool = False) -> None: ...


class UploadSinkState(Protocol):
    """What ``reload_upload_sink`` uses of an ``UploadSink`` (``cdx.connectors.upload.sink``)."""

    @property
    def target(self) -> HqSide: ...

    @property
    def source(self) -> UploadTopicsSide: ...

    @property
    def catalog(self) -> Catalog: ...

    @property
    def dialect(self) -> Dialect: ...

    @property
    def base_config(self) -> dict[str, Any]: ...


class OfflineSyncState(Protocol[W]):
    """What ``reload_offline_sync`` uses of an ``OfflineSync`` (``cdx.connectors.upload.offline``)."""

    topology: Topology
    channels: list[Channel]
    workers: list[W]

    @property
    def requested(self) -> list[str] | None: ...

    @property
    def threads(self) -> dict[str, threading.Thread]: ...

    @property
    def live(self) -> LiveTopology | None: ...

    def worker(self, topology: Topology, channel: Channel) -> W: ...

    def start(self, worker: W) -> None: ...


SyncingChannels = Callable[[Topology, list[str] | None], list[Channel]]
"""The channels with offline registers to sync (all, or those named): ``syncing_channels``."""


def _same(a: Uploader, topology: Topology, channel_id: str) -> bool:
    return (a.channel == topology.channel(channel_id)
            and [s.id for s in a.subjobs] == [s.id for s in upload_subjobs_for(topology, channel_id)]
            and a.subjobs == upload_subjobs_for(topology, channel_id))


def reload_connector(conn: UploadConnectorState[U], topology: Topology, new_uploader: NewUploader[U]) -> None:
    """See the module docstring. Blocks until the leaving uploaders have finished their transaction."""
    channels = uploading_channels(topology, conn.requested)  # ConfigError for a --channel gone
    running = {u.id: u for u in conn.uploaders}
    wanted = {c.id: c for c in channels}
    leaving = [u for i, u in running.items() if i not in wanted or not _same(u, topology, i)]
    arriving = [c for c in channels if c.id not in running or running[c.id] in leaving]
    k = topology.kafka
    ensure_topics(conn.base_config, [TopicSpec(upload_topic(k.topic_prefix, c.id), k.default_partitions,
                                               k.replication_factor, max_message_config(k.max_message_bytes))
                                     for c in arriving])
    for u in leaving:
        u._stop.set()
    for u in leaving:
        conn.threads.pop(u.id).join()
        log.info("channel %s: upload stopped for the new topology%s", u.id, "" if u.id in wanted else
                 " (no longer uploading)")
    assert conn.store is not None
    options = dataclasses.replace(conn.options, from_counter=None, from_tables=None)  # a recovery runs once
    conn.topology, conn.channels = topology, channels
    conn.uploaders = [u for u in conn.uploaders if u not in leaving]
    for c in arriving:
        u = new_uploader(topology, c, conn.store, options, threading.Event())
        conn.uploaders.append(u)
        conn.start(u)
        log.info("channel %s: upload started with the new topology", c.id)
    if conn.live is not None:
        conn.live.set_instances([c.id for c in channels])


def reload_upload_sink(sink: UploadSinkState, topology: Topology) -> None:
    """The HQ upload sink takes a new revision between two batches: new channels' upload topics are
    subscribed (their partitions start at the offsets HQ holds, the beginning for a new channel),
    removed channels' unsubscribed, new or changed upload subjobs' HQ tables introspected. Refused
    (``ConfigError``, nothing changed) when an HQ table does not fit its subjob; ``RetriableError``
    while HQ does not answer (offered again)."""
    conn = sink.target.conn
    if conn is None or sink.source.consumer is None:
        raise RetriableError("the HQ upload sink is not connected yet")
    new = Catalog(topology)
    try:
        tables = new.introspect(conn, sink.dialect)
        conn.rollback()
    except CdxError:
        conn.rollback()
        raise
    except Exception as exc:
        raise db_error(sink.dialect, exc, "HQ database") from exc
    k = topology.kafka
    ensure_topics(sink.base_config, [TopicSpec(t, k.default_partitions, k.replication_factor)
                                     for t in new.channels if t not in sink.catalog.channels])
    resubscribe = set(new.channels) != set(sink.catalog.channels)
    sink.catalog.take(topology, tables)
    if resubscribe:
        sink.source.subscribe(again=True)
        log.info("HQ upload sink: now reading the uploads of %d channels: %s", len(new.channels),
                 ", ".join(sorted(new.channels.values())))


def reload_offline_sync(sync: OfflineSyncState[W], topology: Topology, syncing_channels: SyncingChannels) -> None:
    """``cdx channel offline-sync`` takes a new revision: channels that gained offline registers (or
    upload subjobs) start syncing, channels that lost all of them stop after their current
    transaction, a channel whose registers or subjobs changed restarts with them (each register
    resumes from the position its channel database holds). Refused (``ConfigError``) when a channel
    named with ``--channel`` no longer has registers to sync."""
    channels = syncing_channels(topology, sync.requested)
    running = {w.channel.id: w for w in sync.workers}
    wanted = {c.id: c for c in channels}
    leaving = [w for i, w in running.items()
               if i not in wanted or w.channel != wanted[i] or w.subjobs != upload_subjobs_for(topology, i)]
    for w in leaving:
        w._stop.set()
    for w in leaving:
        sync.threads.pop(w.channel.id).join()
    sync.topology, sync.channels = topology, channels
    sync.workers = [w for w in sync.workers if w not in leaving]
    for c in channels:
        if c.id not in running or running[c.id] in leaving:
            w = sync.worker(topology, c)
            sync.workers.append(w)
            sync.start(w)
    if leaving or len(channels) != len(running):
        log.info("offline sync: now syncing the registers of %s", ", ".join(c.id for c in channels) or "no channel")
    if sync.live is not None:
        sync.live.set_instances([c.id for c in channels])
