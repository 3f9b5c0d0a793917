"""Offline registers -> their channel database, exactly once (``cdx channel offline-sync``).

A POS register that cannot reach its channel database writes its sales to its own offline
database. This process copies them into the channel database when it can; from there the
channel upload takes them to HQ like any other row.

Contract
- Per register and upload subjob, the offline database's upload table is read by replication
  counter with the same gap-tracking position as the channel upload
  (:mod:`cdx.connectors.upload.positions`), in one snapshot; a joined extension row (``override_target:
  false``) is read with its primary row and copied with it, in the same channel transaction.
- Rows are merged into the channel database by **business key** (the channel table's primary
  key, e.g. DATAAREAID, CHANNEL, STORE, TERMINAL, TRANSACTIONID [, LINENUM]), every column the two
  tables share except the replication counter, which the channel database assigns itself
  (identity; or ``MAX + 1`` under SQLite's write lock when the column is a plain one). A key
  already present with the same content is a duplicate (skipped); with **different content** it
  is a conflict: never overwritten, logged and sent to the dead-letter topic.
- The register's position is stored in the **channel** database's ``cdx_state`` (namespace
  ``cdx-offline-sync``, key ``<register>/<table>``) in the same transaction as the rows, so a crash
  never copies a row twice nor skips one.
- Each register is a stage on the kernel (:mod:`cdx.connectors.upload.offline_stage`, run by
  :func:`cdx.stage.loop.run_stage` in a thread of its own): an unreachable channel database is retried
  with back-off (its registers wait; other channels go on); an unreachable register database delays
  that register only. ``stop()`` (SIGTERM) lets every register finish its current transaction.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from confluent_kafka import Producer

from cdx.connectors.upload.offline_merge import TableWork
from cdx.connectors.upload.offline_stage import COMPONENT, ChannelMerge, Positions, RegisterRows
from cdx.connectors.upload.plan import offline_subjobs_for
from cdx.connectors.upload.workers import ChannelThreads
from cdx.errors import ConfigError, FatalError
from cdx.kafka.admin import TopicSpec, ensure_topics
from cdx.kafka.config import client_config, producer_config
from cdx.stage.contract import Stage, StageOptions
from cdx.stage.loop import run_stage
from cdx.topics import dlq_topic
from cdx.topology import Topology
from cdx.topology.model import Channel, OfflineRegister

log = logging.getLogger("cdx.upload.offline")


@dataclass
class SyncOptions:
    poll_interval: float = 1.0
    batch_size: int = 5000
    gap_grace: float = 5.0
    gap_timeout: float = 600.0
    max_backoff: float = 30.0


class ChannelOfflineSync:
    """Syncs every offline register of one channel into its channel database: one stage per register,
    each in a thread; ``run`` returns when all ended (one failing stops the others)."""

    def __init__(self, topology: Topology, channel: Channel, registers: Sequence[OfflineRegister],
                 options: SyncOptions, stop: threading.Event, dlq: Producer | None, dlq_name: str) -> None:
        self.topology, self.channel, self.options, self._stop = topology, channel, options, stop
        self.subjobs = offline_subjobs_for(topology, channel.id)
        self.stages = [self._stage(r, dlq, dlq_name) for r in registers]
        self.error: BaseException | None = None

    def _stage(self, register: OfflineRegister, dlq: Producer | None, dlq_name: str
               ) -> Stage[TableWork, TableWork, Positions]:
        source: RegisterRows | None = None
        target = ChannelMerge(self.channel, register.id, dlq, dlq_name, lambda: source.plans if source else [])
        source = RegisterRows(register, self.subjobs, target, self.options, self._stop)
        o = self.options
        return Stage(f"{COMPONENT}/{register.id}", source, target, target.refuse,
                     options=StageOptions(max_records=o.batch_size, max_wait=o.poll_interval,
                                          initial_backoff=min(0.5, o.max_backoff), max_backoff=o.max_backoff))

    def run(self) -> None:
        threads = [threading.Thread(target=self._run_stage, args=(s,), name=s.name, daemon=True)
                   for s in self.stages]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if self.error is not None:
            log.error("channel %s: offline sync stopped: %s", self.channel.id, self.error)
            raise self.error

    def _run_stage(self, stage: Stage[TableWork, TableWork, Positions]) -> None:
        try:
            run_stage(stage, self._stop)
        except BaseException as exc:  # kept for run(); the channel's other registers stop too
            self.error = self.error or exc
            self._stop.set()


def syncing_channels(topology: Topology, channels: list[str] | None = None) -> list[Channel]:
    """Channels with offline registers and upload subjobs (all, or those named); ``ConfigError`` for others."""
    syncing = [c.channel for c in topology.channels()
               if c.channel.offline_registers and offline_subjobs_for(topology, c.channel.id)]
    known = {c.id.casefold() for c in syncing}
    unknown = [c for c in channels or [] if c.casefold() not in known]
    if unknown:
        raise ConfigError(f"channel {', '.join(repr(c) for c in unknown)}: not in the topology or no offline"
                          " registers to sync; the channels with offline registers are "
                          + (", ".join(c.id for c in syncing) or "none") + ": fix --channel")
    wanted = {c.casefold() for c in channels or []}
    return [c for c in syncing if not wanted or c.id.casefold() in wanted]


class OfflineSync(ChannelThreads):
    """Runs one :class:`ChannelOfflineSync` thread per channel that has offline registers."""

    kind = "offline"

    def __init__(self, topology: Topology, channels: list[str] | None = None,
                 options: SyncOptions | None = None) -> None:
        super().__init__()
        self.topology = topology
        self.options = options or SyncOptions()
        self.requested = channels
        self.channels = syncing_channels(topology, channels)
        k = topology.kafka
        self.base_config = client_config(k.bootstrap_servers, k.security)
        self.dlq_topic = dlq_topic(k.topic_prefix)
        self.dlq: Producer | None = None
        self.workers: list[ChannelOfflineSync] = []

    def setup(self) -> None:
        ensure_topics(self.base_config, [TopicSpec(self.dlq_topic, 1, self.topology.kafka.replication_factor)])
        self.dlq = Producer(producer_config(self.base_config))
        self.workers = [self.worker(self.topology, c) for c in self.channels]

    def worker(self, topology: Topology, channel: Channel) -> ChannelOfflineSync:
        return ChannelOfflineSync(topology, channel, channel.offline_registers, self.options, threading.Event(),
                                  self.dlq, self.dlq_topic)

    def running(self) -> list[ChannelOfflineSync]:
        return self.workers

    def reload(self, topology: Topology) -> None:
        """Take a new topology revision: channels that gained offline registers (or upload subjobs) start
        syncing, channels that lost all of them stop after their current transaction, a channel whose
        registers or subjobs changed restarts with them (each register resumes from the position its channel
        database holds). Refused (``ConfigError``) when a channel named with ``--channel`` no longer has
        registers to sync."""
        channels = syncing_channels(topology, self.requested)
        running = {w.channel.id: w for w in self.workers}
        wanted = {c.id: c for c in channels}
        leaving = [w for i, w in running.items()
                   if i not in wanted or w.channel != wanted[i] or w.subjobs != offline_subjobs_for(topology, i)]
        self.topology, self.channels = topology, channels
        self.workers = self.swap(channels, leaving, lambda c: self.worker(topology, c))
        if leaving or len(channels) != len(running):
            log.info("offline sync: now syncing the registers of %s", ", ".join(c.id for c in channels) or "no channel")

    def run(self) -> None:
        if not self.workers:
            self.setup()
        failed = self.run_workers()
        if self.dlq is not None:
            self.dlq.flush(10)
        if failed is not None:
            err = failed.error
            raise err if isinstance(err, FatalError) else FatalError(f"offline sync stopped: {err}")
