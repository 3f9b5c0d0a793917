"""HQ upload sink: every channel's upload topic -> HQ tables, insert-only, exactly once.

A stage on the kernel (:mod:`cdx.stage`): :func:`cdx.stage.loop.run_stage` runs

- source :class:`~cdx.connectors.upload.sink_kafka.UploadTopics`: one consumer group
  (``<prefix>-hq-upload``, ``read_committed``) on the upload topics of every uploading channel; the
  position is the offsets by ``<topic>/<partition>``, read from HQ on every partition assignment;
- decode :class:`~cdx.connectors.upload.sink_decode.Decoder`: a record -> an HQ row; the channel a
  row belongs to is the topic it came on (a record naming another channel is refused);
- target :class:`~cdx.connectors.upload.sink_hq.HqTarget`: one HQ transaction per batch with the
  rows (insert-only: a row whose (origin channel, counter) or primary key is at HQ already is a
  duplicate, never updated nor inserted twice), the offsets (``cdx_state``, namespace = the group id)
  and one upload session per (channel, subjob) (:mod:`cdx.connectors.upload.sessions`).

A record that cannot be used (undecodable, unknown table, missing key column, refused by HQ once
isolated) goes to the dead-letter topic with the reason, flushed before the transaction that moves
its offset on commits (a crash in between may repeat a dead letter, never lose one). A batch that
fails (HQ unreachable, deadlock...) is rolled back, recorded as a ``Failed`` session when HQ answers,
and retried with the one back-off policy. ``stop()`` (SIGTERM) lets the current batch finish.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from confluent_kafka import Message, Producer

from cdx.codec import SchemaStore, make_codec
from cdx.connectors.upload.sink_catalog import Catalog, HqTable
from cdx.connectors.upload.sink_decode import Decoder, Unusable
from cdx.connectors.upload.sink_hq import COMPONENT, Dead, HqTarget
from cdx.connectors.upload.sink_kafka import UploadTopics
from cdx.connectors.upload.source import db_error
from cdx.dialects import Connection, get_dialect
from cdx.errors import CdxError, RetriableError, SkippableError
from cdx.kafka.admin import COMPACTED, TopicSpec, ensure_topics
from cdx.kafka.config import client_config, producer_config
from cdx.stage.contract import Stage, StageOptions
from cdx.stage.loop import run_stage
from cdx.topics import dlq_topic, schemas_topic
from cdx.topology import Topology

if TYPE_CHECKING:
    from cdx.topology.live import LiveTopology

log = logging.getLogger("cdx.upload.sink")


def sink_group_id(prefix: str) -> str:
    return f"{prefix}-hq-upload"


@dataclass
class SinkOptions:
    batch_size: int = 5000
    poll_timeout: float = 0.1
    """Longest wait for a batch to fill (a batch is applied as soon as it is full or this passes)."""
    instance_id: str | None = None
    """Kafka static membership (``group.instance.id``): a restarted sink gets its partitions back at once."""
    session_timeout_ms: int = 10_000
    max_backoff: float = 30.0
    unknown_schema_wait: float = 300.0
    """How long a record whose writer schema cannot be found is retried before it is dead-lettered."""
    session_retention_days: float = 14.0
    """Upload sessions older than this are deleted (0: keep by count only), like download sessions."""
    session_max_rows: int = 50_000
    """Upload sessions kept per channel at most (0: no limit)."""
    prune_every: int = 1000
    """Batches between two retention checks (also checked whenever HQ is (re)connected)."""


class UploadSink:
    """The HQ upload sink stage (see the module docstring): ``setup()``, then ``run()`` until ``stop()``."""

    def __init__(self, topology: Topology, options: SinkOptions | None = None) -> None:
        self.options = options or SinkOptions()
        k = topology.kafka
        self.prefix = k.topic_prefix
        self.group_id = sink_group_id(self.prefix)
        self.base_config = client_config(k.bootstrap_servers, k.security)
        self.dialect = get_dialect(topology.hq.dialect.value)
        self.dlq_topic = dlq_topic(self.prefix)
        self.catalog = Catalog(topology)
        self.target = HqTarget(self.catalog, self.dialect, self.group_id, self.dlq_topic, self.options)
        self.source = UploadTopics(self.catalog, self.base_config, self.group_id, self.options,
                                   self.target.read_offsets)
        self.decoder: Decoder | None = None
        self._stop = threading.Event()
        self.live: LiveTopology | None = None
        """Set by ``cdx hq upload-sink``: new topology revisions are taken between batches (``reload``)."""

    # views for the CLI, ``reload`` and tests
    @property
    def channels(self) -> dict[str, str]:
        return self.catalog.channels

    @property
    def tables(self) -> dict[str, HqTable]:
        return self.catalog.tables

    @property
    def conn(self) -> Connection | None:
        return self.target.conn

    @property
    def consumer(self) -> Any:
        return self.source.consumer

    def setup(self) -> None:
        """Topics, codec, dead-letter producer and consumer; HQ if it answers (else ``run`` waits for it)."""
        k = self.catalog.topology.kafka
        specs = [TopicSpec(t, k.default_partitions, k.replication_factor) for t in self.channels]
        specs += [TopicSpec(schemas_topic(self.prefix), 1, k.replication_factor, COMPACTED),
                  TopicSpec(self.dlq_topic, 1, k.replication_factor)]
        ensure_topics(self.base_config, specs)
        try:
            self.target.connect()
        except RetriableError as exc:
            log.warning("%s; waiting for it", exc)
        store = SchemaStore(k.bootstrap_servers, schemas_topic(self.prefix), consumer_config=dict(self.base_config))
        self.decoder = Decoder(self.catalog, make_codec(k.codec_config(), store=store),
                               self.options.unknown_schema_wait)
        self.target.dlq = Producer(producer_config(self.base_config))
        self.source.create()
        if self.target.conn is not None:
            self.source.subscribe()

    def stage(self) -> Stage[Message, Any, dict[str, str]]:
        """The stage definition :func:`run_stage` runs."""
        assert self.decoder is not None, "setup() first"
        o = self.options
        return Stage(COMPONENT, self.source, self.target, self._dead_letter, decode=self.decoder,
                     between_batches=self._between_batches, on_failure=self.target.record_failure,
                     options=StageOptions(max_records=o.batch_size, max_wait=o.poll_timeout, max_backoff=o.max_backoff))

    def run(self) -> None:
        """Apply batches until ``stop()`` (the current batch finishes); closes everything on the way out."""
        if self.source.consumer is None:
            self.setup()
        run_stage(self.stage(), self._stop)

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self.source.close()
        self.target.close()

    def reload(self, topology: Topology) -> None:
        """Take a new topology revision between two batches: new channels' upload topics are subscribed
        (their partitions start at the offsets HQ holds, the beginning for a new channel), removed channels'
        unsubscribed, new or changed upload subjobs' HQ tables introspected. Refused (``ConfigError``,
        nothing changed) when an HQ table does not fit its subjob; ``RetriableError`` while HQ does not
        answer (offered again)."""
        conn = self.target.conn
        if conn is None or self.source.consumer is None:
            raise RetriableError("the HQ upload sink is not connected yet")
        new = Catalog(topology)
        try:
            tables = new.introspect(conn, self.dialect)
            conn.rollback()
        except CdxError:
            conn.rollback()
            raise
        except Exception as exc:
            raise db_error(self.dialect, exc, "HQ database") from exc
        k = topology.kafka
        ensure_topics(self.base_config, [TopicSpec(t, k.default_partitions, k.replication_factor)
                                         for t in new.channels if t not in self.catalog.channels])
        resubscribe = set(new.channels) != set(self.catalog.channels)
        self.catalog.take(topology, tables)
        if resubscribe:
            self.source.subscribe(again=True)
            log.info("HQ upload sink: now reading the uploads of %d channels: %s", len(new.channels),
                     ", ".join(sorted(new.channels.values())))

    def _between_batches(self) -> None:
        if self.live is not None:
            self.live.offer(self.reload)

    def _dead_letter(self, msg: Message, exc: SkippableError) -> None:
        err = exc if isinstance(exc, Unusable) else Unusable(exc.reason, self.catalog.channels.get(msg.topic() or ""))
        self.target.dead.append(Dead(msg, err))

