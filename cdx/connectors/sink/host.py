"""``SinkHost``: many channel sinks in one process, one thread each.

Every sink has its own consumer, connection and backoff (see ``runner``), so a slow or
unreachable database only holds back its own thread. The host shares the codec (schema store),
creates the dead-letter topic, and stops every sink on ``stop()``
(each finishes its current batch). A sink that fails fatally stops alone; ``wait`` reports it.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Iterable
from typing import Any

from cdx.codec import SchemaStore, make_codec
from cdx.connectors.sink import tools
from cdx.connectors.sink.dlq import DeadLettersByOwner
from cdx.connectors.sink.runner import ChannelSink, SinkSettings
from cdx.connectors.sink.spec import SinkSpec, sink_specs
from cdx.errors import ConfigError
from cdx.kafka.admin import TopicSpec, ensure_topics
from cdx.kafka.config import client_config, producer_config
from cdx.topics import dlq_topic, schemas_topic
from cdx.topology.live import LiveTopology
from cdx.topology.root import Topology

log = logging.getLogger("cdx.sink")

DLQ_CONFIG = tools.DLQ_CONFIG
"""Dead letters are kept until an operator deals with them."""
codec_config = tools.codec_config


RECORDS_BUDGET = 50_000
"""Decoded records a host holds at most (all sinks' batches together)."""
PREFETCH_BUDGET_KB = 64 * 1024
"""Bytes librdkafka may prefetch for the whole host."""


def same_spec(a: SinkSpec, b: SinkSpec) -> bool:
    """Field by field (``SinkSpec`` compares by identity): a sink whose spec is the same keeps running."""
    return all(getattr(a, f.name) == getattr(b, f.name) for f in dataclasses.fields(SinkSpec))


def budgeted(settings: SinkSettings, sinks: int) -> SinkSettings:
    """``settings`` with batch size and prefetch shrunk so ``sinks`` sinks stay within the host budgets."""
    n = max(sinks, 1)
    return dataclasses.replace(
        settings,
        batch_size=max(200, min(settings.batch_size, RECORDS_BUDGET // n)),
        queued_max_kbytes=max(256, min(settings.queued_max_kbytes, PREFETCH_BUDGET_KB // n)))


class SinkHost:
    """Runs the sinks of ``owner_ids`` (default: every channel and register database)."""

    def __init__(self, topology: Topology, owner_ids: Iterable[str] | None = None,
                 settings: SinkSettings | None = None) -> None:
        self.topology = topology
        self.owner_ids = list(owner_ids) if owner_ids is not None else None
        self.specs = sink_specs(topology, self.owner_ids)
        self.settings = settings or SinkSettings()
        self.live: LiveTopology | None = None
        """Set by ``cdx sink``: ``wait`` then takes new topology revisions (``reload``)."""
        self.sinks: list[ChannelSink] = []
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._thread_of: dict[str, threading.Thread] = {}
        self._store: SchemaStore | None = None
        self._dead_letters: DeadLettersByOwner | None = None

    def setup(self) -> None:
        """Create the dead-letter topic, the shared codec and producer, and the sinks (may be retried)."""
        self.close()
        k = self.topology.kafka
        shared = self.shared_config()
        dlq = dlq_topic(k.topic_prefix)
        ensure_topics(shared, [TopicSpec(dlq, 1, k.replication_factor, DLQ_CONFIG)])
        self._store = SchemaStore(k.bootstrap_servers, schemas_topic(k.topic_prefix), consumer_config=dict(shared))
        codec = make_codec(codec_config(self.topology), store=self._store)
        self._dead_letters = DeadLettersByOwner(lambda owner: producer_config(self.config_of(owner)), dlq)
        self._codec = codec
        self.sinks = [self._new_sink(spec) for spec in self.specs]

    def _new_sink(self, spec: SinkSpec) -> ChannelSink:
        assert self._dead_letters is not None
        settings = budgeted(self.settings, len(self.specs))
        return ChannelSink(spec, self.config_of(spec.owner_id), self._codec, self._dead_letters, settings,
                           threading.Event())

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
        for sink in self.sinks:
            self._start_one(sink)

    def _start_one(self, sink: ChannelSink) -> None:
        if self._stop.is_set():
            sink.stop()
        t = threading.Thread(target=self._run_one, args=(sink,), name=f"sink-{sink.name}", daemon=True)
        t.start()
        self._threads.append(t)
        self._thread_of[sink.spec.owner_id] = t

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
            self._thread_of[sink.spec.owner_id].join()
            log.info("sink %s stopped for the new topology%s", sink.name,
                     "" if sink.spec.owner_id in wanted else " (no longer in it)")
        self.topology, self.specs = topology, specs
        self.sinks = [s for s in self.sinks if s not in leaving]
        for spec in specs:
            if spec.owner_id not in running or running[spec.owner_id] in leaving:
                sink = self._new_sink(spec)
                self.sinks.append(sink)
                self._start_one(sink)
                log.info("sink %s started with the new topology", sink.name)
        if self.live is not None:
            self.live.set_instances([s.owner_id for s in specs])

    def _run_one(self, sink: ChannelSink) -> None:
        from cdx.connectors.migrate.fleet import before_sink

        def state(status: str, error: str | None) -> None:
            sink.status, sink.last_error = status, error

        try:
            if before_sink(self.topology, sink.spec.owner_id, sink._stop, state):  # extension scripts first
                sink.run()
        except Exception as e:
            if sink.status != "failed":  # raised before the sink's own handler, which logs and marks it
                sink.status, sink.last_error = "failed", f"{type(e).__name__}: {e}"
                log.error("sink %s not started: %s", sink.name, sink.last_error, exc_info=True)

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
        while any(t.is_alive() for t in self._threads) or self._serving():
            if deadline is not None and time.monotonic() >= deadline:
                return False
            if self.live is not None and not self._stop.is_set():
                self.live.offer(self.reload)
            alive = [t for t in self._threads if t.is_alive()]
            if alive:
                alive[0].join(0.5)
            else:
                self._stop.wait(0.5)
        self.close()
        return not self.failed()

    def _serving(self) -> bool:
        """With ``live``: keep waiting for revisions until stopped, unless every sink failed."""
        return (self.live is not None and not self._stop.is_set()
                and (not self.sinks or any(s.status != "failed" for s in self.sinks)))

    def run(self) -> bool:
        """``setup``, ``start``, then block until every sink has stopped. True if none failed."""
        self.start()
        return self.wait()

    def failed(self) -> list[ChannelSink]:
        return [s for s in self.sinks if s.status == "failed"]

    def close(self) -> None:
        if self._dead_letters is not None:
            self._dead_letters.close()
            self._dead_letters = None
        if self._store is not None:
            self._store.close()
            self._store = None
