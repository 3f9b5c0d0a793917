"""``SinkHost``: many channel sinks in one process on a small, fixed number of threads.

Design (issue #14: 1,000 channels per process)
- **Feeds**: one shared Kafka consumer per Kafka identity of the served databases (usually one per
  process; a database with its own principal in ``kafka.principals.channels`` gets the feed of that
  identity). No consumer groups: the feed ``assign()``s the group topics' partitions at the
  positions the channels want; each channel's position lives in its own database (rows and offsets
  in one transaction), and the channel lock in the database fences a second applier (see
  ``feed``, ``runner``, ``lock``).
- **Workers** (``pool``): ``SinkSettings.workers`` threads apply the channels' batches, one batch of
  a channel at a time, in order; a ticker thread schedules retries and idle housekeeping.
- A slow or unreachable database holds at most one worker for one step; while it waits (back-off)
  its channel wants no records, so the feed goes on for the others.
- The host shares the codec (schema store) and the dead-letter producers, creates the dead-letter
  topic, and stops every sink on ``stop()`` (each finishes its current batch). A sink that fails
  fatally stops alone; ``wait`` reports it.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

from cdx.codec import SchemaStore, make_codec
from cdx.connectors.sink import tools
from cdx.connectors.sink.dlq import DeadLettersByOwner
from cdx.connectors.sink.feed import Feed
from cdx.connectors.sink.mirror import OffsetMirror
from cdx.connectors.sink.pool import Workers, join_naming, where
from cdx.connectors.sink.runner import ChannelSink, SinkSettings
from cdx.connectors.sink.spec import SinkSpec, sink_specs
from cdx.errors import CdxError, ConfigError, FatalError, RetriableError
from cdx.kafka.admin import TopicSpec, ensure_topics
from cdx.kafka.config import client_config, producer_config
from cdx.topics import dlq_topic, schemas_topic
from cdx.topology.live import LiveTopology
from cdx.topology.root import Topology

log = logging.getLogger("cdx.sink")

_NUMBERS = itertools.count(1)
"""Numbers the hosts of a process (their threads' names: tests and tools run several hosts in one process)."""

RECORDS_BUDGET = 50_000
"""Decoded records a host holds at most (all sinks' batches together)."""
PREFETCH_BUDGET_KB = 64 * 1024
"""Bytes librdkafka may prefetch for the whole host (split among its feeds, at most 16 MiB each)."""
HOUSEKEEPING_PER_SECOND = 50
"""Idle housekeeping steps a host does per second at most (the idle tick grows with the channels: every 20 s
at 1,000 channels; each step reads the controls and, with SQLite, renews the channel's lease, whose length
grows with the tick). Records arriving are applied at once whatever the tick: the batch path re-reads the
controls itself."""


def same_spec(a: SinkSpec, b: SinkSpec) -> bool:
    """Field by field (``SinkSpec`` compares by identity): a sink whose spec is the same keeps running."""
    return all(getattr(a, f.name) == getattr(b, f.name) for f in dataclasses.fields(SinkSpec))


def budgeted(settings: SinkSettings, sinks: int) -> SinkSettings:
    """``settings`` with batch size and idle tick set so ``sinks`` sinks stay within the host budgets."""
    n = max(sinks, 1)
    return dataclasses.replace(
        settings, batch_size=max(200, min(settings.batch_size, RECORDS_BUDGET // n)),
        idle_tick=max(settings.idle_tick, n / HOUSEKEEPING_PER_SECOND))


def close_all(sinks: list[ChannelSink], threads: int, label: str = "sink") -> None:
    """Close ``sinks`` (release each lock, close each connection) on ``threads`` threads."""
    with ThreadPoolExecutor(max(1, min(threads, len(sinks))), thread_name_prefix=f"{label}-close") as pool:
        list(pool.map(lambda s: s.close(), sinks))


class SinkHost:
    """Runs the sinks of ``owner_ids`` (default: every channel and register database)."""

    def __init__(self, topology: Topology, owner_ids: Iterable[str] | None = None,
                 settings: SinkSettings | None = None) -> None:
        self.topology = topology
        self.owner_ids = list(owner_ids) if owner_ids is not None else None
        self.specs = sink_specs(topology, self.owner_ids)
        self.settings = settings or SinkSettings()
        self.label = f"sink{next(_NUMBERS)}"
        """Prefix of this host's thread names (``sink1-feed-1``, ``sink1-worker-0``, ``sink1-offsets``)."""
        self.live: LiveTopology | None = None
        """Set by ``cdx sink``: ``wait`` then takes new topology revisions (``reload``)."""
        self.sinks: list[ChannelSink] = []
        self.feeds: dict[str, Feed] = {}
        self._feed_threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._halt = threading.Event()
        """Set once every sink is to stop: ends the workers and the feeds."""
        self.workers = Workers(self.settings.workers, lambda: self.sinks, self._halt, self.label)
        self._started = False
        self._store: SchemaStore | None = None
        self._dead_letters: DeadLettersByOwner | None = None

    def setup(self) -> None:
        """Create the dead-letter topic, the shared codec and producer, and the sinks (may be retried)."""
        self.close()
        k = self.topology.kafka
        shared = self.shared_config()
        dlq = dlq_topic(k.topic_prefix)
        ensure_topics(shared, [TopicSpec(dlq, 1, k.replication_factor, tools.DLQ_CONFIG)])
        self._store = SchemaStore(k.bootstrap_servers, schemas_topic(k.topic_prefix), consumer_config=dict(shared))
        self._codec = make_codec(k.codec_config(), store=self._store)
        self._dead_letters = DeadLettersByOwner(lambda owner: producer_config(self.config_of(owner)), dlq)
        self.sinks = [self._new_sink(spec) for spec in self.specs]

    def _new_sink(self, spec: SinkSpec) -> ChannelSink:
        assert self._dead_letters is not None
        settings = budgeted(self.settings, len(self.specs))
        sink = ChannelSink(spec, self.config_of(spec.owner_id), self._codec, self._dead_letters, settings,
                           threading.Event(), prepare=partial(self._prepare, spec.owner_id))
        feed = self._feed_of(sink.kafka_config)
        sink.ends_seen = lambda: feed.ends(spec.topic)
        return sink

    def _feed_of(self, config: dict[str, Any]) -> Feed:
        key = json.dumps(sorted(config.items()), default=str)
        if key not in self.feeds:
            k = self.topology.kafka
            self.feeds[key] = feed = Feed(
                f"{len(self.feeds) + 1}", config, f"{k.topic_prefix}-sink-host", batch_size=self.settings.batch_size,
                poll_timeout=self.settings.poll_timeout, on_ready=self._ready,
                queued_max_kbytes=max(1024, min(16 * 1024, PREFETCH_BUDGET_KB // max(1, len(self.feeds) + 1))),
                overrides=self.settings.consumer_overrides)
            if self._started:
                self._start_feed(feed)
        return self.feeds[key]

    def _ready(self, reader: Any) -> None:
        if isinstance(reader, ChannelSink):
            self.workers.kick(reader)

    def _prepare(self, owner_id: str) -> None:
        """Run the database's pending extension scripts before its sink writes anything."""
        from cdx.connectors.migrate.fleet import failure_text, pending_results
        try:
            results = pending_results(self.topology, [owner_id])
        except CdxError as e:  # the scripts directory is missing or unreadable
            raise FatalError(f"extension scripts: {e}") from e
        if not results or results[0].ok:
            return
        if results[0].error is None:
            raise FatalError(f"extension scripts: {failure_text(results[0])}")
        raise RetriableError(results[0].error)

    def config_of(self, owner_id: str) -> dict[str, Any]:
        """Client settings of one database's sink: logged in as its identity of ``kafka.principals.channels``
        (``kafka.security`` when it has none)."""
        k = self.topology.kafka
        return client_config(k.bootstrap_servers, k.security_of(owner_id))

    def shared_config(self) -> dict[str, Any]:
        """Client settings of what the host shares among its sinks (the schemas reader, the dead-letter
        topic check): ``kafka.shared_security`` of the served databases."""
        k = self.topology.kafka
        return client_config(k.bootstrap_servers, k.shared_security(s.owner_id for s in self.specs))

    def start(self) -> None:
        if not self.sinks:
            self.setup()
        self._started = True
        for feed in self.feeds.values():
            self._start_feed(feed)
        for sink in self.sinks:
            self._start_one(sink)
        self.workers.start()
        if self.settings.commit_to_kafka:
            self._start_thread(self._mirror_offsets, f"{self.label}-offsets")

    def _mirror_offsets(self) -> None:
        mirror = OffsetMirror()
        try:
            while not self._halt.wait(self.settings.kafka_commit_interval):
                mirror.commit(list(self.sinks))
            mirror.commit(list(self.sinks))
        finally:
            mirror.close()

    def _start_thread(self, target: Any, name: str, *args: Any) -> None:
        t = threading.Thread(target=target, args=args, name=name, daemon=True)
        t.start()
        self._feed_threads.append(t)

    def _start_feed(self, feed: Feed) -> None:
        self._start_thread(feed.run, f"{self.label}-feed-{feed.name}", self._halt)

    def _start_one(self, sink: ChannelSink) -> None:
        if self._stop.is_set():
            sink.stop()
        self._feed_of(sink.kafka_config).add(sink)
        self.workers.kick(sink)

    def reload(self, topology: Topology) -> None:
        """Run the sinks of ``topology`` from now on (called between two checks of ``wait``; each sink
        is between two of its batches when it stops): removed databases' sinks stop, sinks whose
        spec changed stop and start again with it (from the offsets their database holds), new
        databases' sinks start (a new database bootstraps from the beginning of its group topic).
        Raises ``ConfigError``, nothing changed, when a database this host was started for
        (``--channel``) is not in ``topology``."""
        if self.owner_ids is not None:
            known = {d.owner_id.casefold() for d in topology.databases()}
            gone = [o for o in self.owner_ids if o.casefold() not in known]
            if gone:
                raise ConfigError(f"{', '.join(gone)} not in this revision, and this sink process serves it"
                                  " (--channel): stop the process (or restart it without that --channel)")
        specs = sink_specs(topology, self.owner_ids)
        running = {s.spec.owner_id: s for s in self.sinks}
        wanted = {s.owner_id: s for s in specs}
        leaving = [s for o, s in running.items() if o not in wanted or not same_spec(wanted[o], s.spec)]
        for sink in leaving:
            sink.stop()
        for sink in leaving:
            self._feed_of(sink.kafka_config).remove(sink)
            sink.close()
            log.info("sink %s stopped for the new topology%s", sink.name,
                     "" if sink.spec.owner_id in wanted else " (no longer in it)")
        self.topology, self.specs = topology, specs
        kept = [s for s in self.sinks if s not in leaving]
        started = [self._new_sink(spec) for spec in specs
                   if spec.owner_id not in running or running[spec.owner_id] in leaving]
        self.sinks = kept + started
        for sink in started:
            self._start_one(sink)
            log.info("sink %s started with the new topology", sink.name)
        if self.live is not None:
            self.live.set_instances([s.owner_id for s in specs])

    def stop(self) -> None:
        """Ask every sink to finish its current batch and stop."""
        self._stop.set()
        for sink in self.sinks:
            sink.stop()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every sink has stopped (or ``timeout`` passed; signals stay serviceable); with
        ``live``, take new topology revisions meanwhile and keep running until ``stop()``.

        True if all stopped and none failed.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._stop.is_set() and (self._serving() or any(s.phase != "failed" for s in self.sinks)):
            if deadline is not None and time.monotonic() >= deadline:
                return False
            if self.live is not None:
                self.live.offer(self.reload)
            self._stop.wait(0.5)
        self._halt.set()
        self.workers.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        for t in self._feed_threads:
            join_naming(t, deadline)
        if self.alive():
            self._name_stuck_threads()
            return False
        close_all(self.sinks, self.settings.workers, self.label)
        self.close()
        return not self.failed()

    def _name_stuck_threads(self) -> None:
        """Warn once per thread still running when ``wait``'s timeout ran out: its name and where it is."""
        for t in [*self.workers.threads(), *self._feed_threads]:
            if t.is_alive():
                log.warning("sink host: thread %s still runs after the stop timed out; at %s", t.name, where(t))

    def alive(self) -> bool:
        """Whether a thread of the host (worker, feed) still runs."""
        return self.workers.alive() or any(t.is_alive() for t in self._feed_threads)

    def _serving(self) -> bool:
        """With ``live``: keep waiting for revisions until stopped, unless every sink failed."""
        return (self.live is not None and not self._stop.is_set()
                and (not self.sinks or any(s.status != "failed" for s in self.sinks)))

    def failed(self) -> list[ChannelSink]:
        return [s for s in self.sinks if s.status == "failed"]

    def close(self) -> None:
        if self._dead_letters is not None:
            self._dead_letters.close()
            self._dead_letters = None
        if self._store is not None:
            self._store.close()
            self._store = None
