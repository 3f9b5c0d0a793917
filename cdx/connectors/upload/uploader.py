"""Channel upload: each channel's upload tables -> ``<prefix>.upload.<channel-id>``, exactly once.

Contract
- Per channel and upload subjob, rows are read by replication counter (see
  :mod:`cdx.connectors.upload.positions` for the gap handling that makes out-of-order commits safe)
  and published on the channel's upload topic, keyed by (table, counter), each table on one
  partition in counter order.
- One poll of a channel reads every upload table in **one database snapshot** and produces the
  new rows of all of them **and** their new positions (compacted topic
  ``<prefix>._upload_positions``, key ``<channel>/<table>``) in **one Kafka transaction**. A crash
  at any moment leaves both or neither; a restart resumes from the committed positions.
- ``transactional.id`` = ``<prefix>-upload-<channel>``. After a failed transaction the positions are
  re-read from what is committed, exactly as on a restart. A lost producer (fenced by a broker failover
  that moved the transaction coordinator) is recovered in process, within a failure budget; with
  ``--ha`` only while this process holds the channel's lease: a process that lost it to a standby stops
  (:class:`cdx.kafka.txn_target.KafkaTxnTarget`, the same target as capture's).
- Channels are independent (a thread each): an unreachable or misconfigured channel database is
  retried with backoff and delays only its own upload.
- A row that cannot be encoded, or whose record is larger than ``kafka.max_message_bytes``, goes
  to the dead-letter topic in the same transaction, and the channel moves on; so does a gap given
  up after ``gap_timeout`` (see :mod:`cdx.connectors.upload.guards`).
- A table whose counters went backwards is halted (in its position) until restarted at a counter
  (``UploadOptions.from_counter``: ``cdx channel upload --from-counter N``); the others go on.
- ``stop()`` (SIGTERM) lets every channel finish its current transaction, then ``run`` returns.
"""

from __future__ import annotations

import dataclasses
import logging
import threading

from cdx.codec import SchemaStore
from cdx.connectors.upload.channel import ChannelUploader
from cdx.connectors.upload.plan import (
    UploadOptions,
    load_upload_positions,
    restart_tables,
    upload_positions_topic,
    upload_subjobs_for,
    uploading_channels,
)
from cdx.connectors.upload.workers import ChannelThreads
from cdx.errors import FatalError
from cdx.kafka.admin import (
    COMPACTED,
    TopicSpec,
    ensure_topics,
    max_message_config,
    raise_max_message_bytes,
)
from cdx.kafka.config import client_config
from cdx.topics import dlq_topic, schemas_topic, upload_topic
from cdx.topology import Topology

log = logging.getLogger("cdx.upload")

__all__ = ["ChannelUploader", "UploadConnector", "UploadOptions", "load_upload_positions",
           "upload_positions_topic", "uploading_channels"]


class UploadConnector(ChannelThreads):
    """Runs :class:`ChannelUploader` threads for many channels in one process."""

    kind = "upload"

    def __init__(self, topology: Topology, channels: list[str] | None = None,
                 options: UploadOptions | None = None) -> None:
        super().__init__()
        self.topology = topology
        self.options = options or UploadOptions()
        self.channels = uploading_channels(topology, channels)
        for c in self.channels if self.options.from_counter is not None else ():
            restart_tables(topology, c.id, self.options.from_tables)  # ConfigError before any database or Kafka
        k = topology.kafka
        self.prefix = k.topic_prefix
        self.base_config = client_config(k.bootstrap_servers, k.security)
        self.store: SchemaStore | None = None
        self.uploaders: list[ChannelUploader] = []
        self.requested = channels

    def setup(self) -> None:
        """Create the topics (upload topics of the channels, positions, schemas, dead letters), each channel's
        with its own credentials (``kafka.security_of``): it may see only its own upload topic."""
        k = self.topology.kafka
        limit = max_message_config(k.max_message_bytes)
        shared = [TopicSpec(upload_positions_topic(self.prefix), 1, k.replication_factor, COMPACTED),
                  TopicSpec(schemas_topic(self.prefix), 1, k.replication_factor, COMPACTED),
                  TopicSpec(dlq_topic(self.prefix), 1, k.replication_factor)]
        for c in self.channels:
            config, topic = client_config(k.bootstrap_servers, k.security_of(c.id)), upload_topic(self.prefix, c.id)
            created = ensure_topics(config, [TopicSpec(topic, k.default_partitions, k.replication_factor, limit),
                                             *shared])
            raise_max_message_bytes(config, [topic] if topic not in created else [], k.max_message_bytes, log)
        self.store = SchemaStore(k.bootstrap_servers, schemas_topic(self.prefix), consumer_config=client_config(
            k.bootstrap_servers, k.shared_security(c.id for c in self.channels)))
        self.uploaders = [ChannelUploader(self.topology, c, self.store, self.options, threading.Event())
                          for c in self.channels]

    def running(self) -> list[ChannelUploader]:
        return self.uploaders

    def reload(self, topology: Topology) -> None:
        """Take a new topology revision (``cdx.topology.live``), between two transactions of each channel.
        Blocks until the leaving uploaders have finished their transaction.

        - A new uploading channel (or a channel that starts uploading): its upload topic is created and
          its uploader starts (from its committed positions: none yet, so from its tables' first rows).
        - A channel no longer uploading or no longer in the topology: its uploader finishes its current
          transaction and stops (only when this process serves every channel; see below).
        - A channel whose upload subjobs or database changed: its uploader stops after its transaction and
          starts again with them, from the positions committed with its last transaction (a new upload
          table starts at its first row): nothing is published twice, nothing skipped.
        - Other channels are not touched.

        Refused (``ConfigError``, nothing changed) when a channel the process was started for
        (``--channel``) is not uploading in the new revision: the operator stops that process."""
        channels = uploading_channels(topology, self.requested)  # ConfigError for a --channel gone
        running = {u.id: u for u in self.uploaders}
        wanted = {c.id for c in channels}
        leaving = [u for i, u in running.items() if i not in wanted or u.channel != topology.channel(i)
                   or u.subjobs != upload_subjobs_for(topology, i)]
        arriving = [c for c in channels if c.id not in running or running[c.id] in leaving]
        k = topology.kafka
        ensure_topics(self.base_config, [TopicSpec(upload_topic(k.topic_prefix, c.id), k.default_partitions,
                                                   k.replication_factor, max_message_config(k.max_message_bytes))
                                         for c in arriving])
        store = self.store
        assert store is not None
        options = dataclasses.replace(self.options, from_counter=None, from_tables=None)  # a recovery runs once
        self.topology, self.channels = topology, channels
        self.uploaders = self.swap(channels, leaving,
                                   lambda c: ChannelUploader(topology, c, store, options, threading.Event()))
        for u in leaving:
            log.info("channel %s: upload stopped for the new topology%s", u.id, "" if u.id in wanted else
                     " (no longer uploading)")
        for c in arriving:
            log.info("channel %s: upload started with the new topology", c.id)

    def run(self) -> None:
        """Run every channel until ``stop()``; a fatal error in one channel stops all and is raised.
        With ``live``, new topology revisions are taken meanwhile (``reload``)."""
        if not self.uploaders:
            self.setup()
        failed = self.run_workers()
        if self.store is not None:
            self.store.close()
        if failed is not None:
            if isinstance(failed.error, FatalError):
                raise failed.error
            raise FatalError(f"channel {failed.channel.id}: upload stopped: {failed.error}") from failed.error
