"""One channel's upload (:class:`ChannelUploader`), a stage on the kernel (:mod:`cdx.stage`); the
contract is in :mod:`cdx.connectors.upload.uploader`.

:func:`cdx.stage.loop.run_stage` runs

- source :class:`~cdx.connectors.upload.channel_read.ChannelRows`: the channel database's upload
  tables, read by replication counter in one snapshot (a record is one table's new rows);
- decode :meth:`~cdx.connectors.upload.channel_writer.ChannelWriter.encode`: a table's rows and dead
  letters as Kafka records (new schemas first, in a short transaction);
- target :class:`~cdx.kafka.txn_target.KafkaTxnTarget` (as capture's): one Kafka transaction with the
  rows, the dead letters and the tables' new positions; a lost producer is recovered in process (with
  ``--ha`` only while this process holds the channel's lease). The source re-reads the positions from
  what is committed (read_committed) on open and after every rewind.

This module adds what is the channel's own: the HA lease (``--ha``), the restart of tables at a
counter (``--from-counter``), and the stage's hooks.
"""

from __future__ import annotations

import logging
import threading

from confluent_kafka import KafkaException

from cdx.codec import SchemaStore, make_codec
from cdx.connectors.upload.channel_read import ChannelRows, Pending, Positions, UploadTable
from cdx.connectors.upload.channel_writer import ChannelWriter, Encoded, upload_target
from cdx.connectors.upload.plan import UploadOptions, load_upload_positions, restart_tables, upload_subjobs_for
from cdx.errors import RetriableError
from cdx.kafka.admin import partitions_of
from cdx.kafka.config import client_config
from cdx.kafka.lease import Lease, LeaseLost
from cdx.kafka.transactions import TransactionalProducer
from cdx.stage.contract import Stage, StageOptions
from cdx.stage.loop import apply_batch, run_stage
from cdx.topics import lease_topic
from cdx.topology import Topology
from cdx.topology.model import Channel

log = logging.getLogger("cdx.upload")


class ChannelUploader:
    """Uploads one channel (see :mod:`cdx.connectors.upload.uploader`); ``run`` is the channel's thread."""

    def __init__(self, topology: Topology, channel: Channel, store: SchemaStore, options: UploadOptions,
                 stop: threading.Event) -> None:
        self.topology, self.channel, self.id, self.options, self._stop = topology, channel, channel.id, options, stop
        k = topology.kafka
        self.prefix = k.topic_prefix
        self.base_config = client_config(k.bootstrap_servers, k.security_of(channel.id))  # its own identity
        self.subjobs = upload_subjobs_for(topology, channel.id)
        self.error: BaseException | None = None
        self.lease: Lease | None = None
        self.target = upload_target(self.prefix, channel.id, self.base_config, k.max_message_bytes,
                                    lambda positions: self.writer.position_records(positions), self._still_ours)
        self.codec = make_codec(k.codec_config(), store=store, publisher=self.target.publisher)
        self.writer = ChannelWriter(self.target, self.codec, channel.id, self.prefix, k.max_message_bytes,
                                    options.gap_timeout)
        self.source = ChannelRows(channel, self.subjobs, store, self.prefix, options, self._positions,
                                  self._partitions, stop)
        self._restart_pending = options.from_counter is not None

    # views for tests and ``cdx status``-like callers
    @property
    def tables(self) -> list[UploadTable]:
        return self.source.tables

    @property
    def producer(self) -> TransactionalProducer | None:
        return self.target.producer

    def stage(self) -> Stage[Pending, Encoded, Positions]:
        o = self.options
        return Stage(f"channel-upload/{self.id}", self.source, self.target, self.writer.refuse,
                     decode=self.writer.encode, between_batches=self._between_batches,
                     options=StageOptions(max_records=o.batch_size, max_wait=o.poll_interval,
                                          initial_backoff=min(0.5, o.max_backoff), max_backoff=o.max_backoff))

    def run(self) -> None:
        """Upload until stopped (:func:`run_stage`: database and Kafka trouble retried with back-off for this
        channel only; a lost producer recovered in process). A fatal error ends the thread and is kept in
        ``self.error``.

        With ``options.ha`` the channel first waits as standby for its lease (``cdx.kafka.lease``); the
        producer (whose ``init_transactions`` fences a predecessor) and the positions come only after it,
        and the lease is released only after the producer is closed."""
        lease = self.lease = self._lease() if self.options.ha else None
        try:
            if lease is None or lease.acquire(self._stop):
                run_stage(self.stage(), self._stop)
        except BaseException as exc:
            self.error = self.error or exc
            log.error("channel %s: upload stopped: %s", self.id, exc)
            raise
        finally:
            if lease is not None:
                lease.release()

    def _lease(self) -> Lease:
        k = self.topology.kafka

        def lost() -> None:
            self.error = LeaseLost(f"channel {self.id}: another process took over this channel's upload"
                                   " (this one was paused or cut off from Kafka); exiting so it can restart as standby")
            self._stop.set()

        return Lease(self.base_config, lease_topic(self.prefix), role="upload", name=self.id, prefix=self.prefix,
                     replication_factor=k.replication_factor, session_timeout=self.options.lease_timeout,
                     on_lost=lost)

    def _still_ours(self) -> bool:
        """May a lost producer be replaced (its ``init_transactions`` fences whoever holds the id)? Without
        ``--ha`` always; with it only while the channel's lease is confirmed ours."""
        return self.lease is None or self.lease.confirmed()

    def _positions(self) -> Positions:
        """This channel's committed positions (read_committed): after any failure, what is committed counts."""
        mine = f"{self.id}/"
        try:
            stored = load_upload_positions(self.base_config, self.writer.positions_topic)
        except (KafkaException, TimeoutError) as exc:
            raise RetriableError(f"channel {self.id}: upload positions not readable: {exc}") from exc
        return {key: p for key, p in stored.items() if key.startswith(mine)}

    def _partitions(self) -> int:
        return max(1, len(partitions_of(self.base_config, self.writer.topic)))

    # ------------------------------------------------------------------ one poll (tests, tools)
    def poll_once(self) -> int:
        """One batch as the loop runs it: read every upload table once (one snapshot) and publish what is new
        with the new positions (one transaction, retried until committed). Returns the tables that had work."""
        if self.target.producer is None:
            self.target.open()
        self._between_batches()
        records = self.source.poll(self.options.batch_size, 0.0)
        if records:
            apply_batch(self.stage(), records, self._stop)
        return len(records)

    def close(self) -> None:
        self.target.close()
        self.source.close()

    # ------------------------------------------------------------------ between batches
    def _between_batches(self) -> None:
        """A lost producer is replaced (before the source re-reads what is committed); a restart at a counter
        is done, once."""
        self.target.recover()
        if self._restart_pending:
            if self.source.conn is None:
                self.source.open()
            self._restart_tables()

    def _restart_tables(self) -> None:
        """``from_counter``: restart the chosen tables at that counter (one transaction, once); a wrong
        ``--table`` is a ``ConfigError`` that stops the upload."""
        subjobs = {s.id for s in restart_tables(self.topology, self.id, self.options.from_tables)}
        chosen = [t for t in self.tables if t.subjob.id in subjobs]
        restarted = [(t, t.position.copy()) for t in chosen]
        for _, pos in restarted:
            pos.restart_at(int(self.options.from_counter or 0))
        out = self.writer.positions({t.key: pos for t, pos in restarted})
        self.target.transaction(lambda: self.target.txn.produce_many(out.topic, out.messages))
        for t, pos in restarted:
            log.warning("channel %s, %s: upload restarts at counter %d (was at %d%s)", self.id, t.source.table,
                        pos.high + 1, t.position.high, "; halt lifted" if t.position.halted else "")
            t.position = pos
        self._restart_pending = False

