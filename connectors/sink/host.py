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
from cdx.kafka.admin import TopicSpec, ensure_topics
from cdx.kafka.config import client_config, producer_config
from cdx.topics import dlq_topic, schemas_topic
from cdx.topology.root import Topology
from connectors.sink import tools
from connectors.sink.dlq import DeadLettersByOwner
from connectors.sink.runner import ChannelSink, SinkSettings
from connectors.sink.spec import sink_specs

log = logging.getLogger("cdx.sink")

DLQ_CONFIG = tools.DLQ_CONFIG
"""Dead letters are kept until an operator deals with them."""
codec_config = tools.codec_config


RECORDS_BUDGET = 50_000
"""Decoded records a host holds at most (all sinks' batches together)."""
PREFETCH_BUDGET_KB = 64 * 1024
"""Bytes librdkafka may prefetch for the whole host."""


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
        self.specs = sink_specs(topology, owner_ids)
        self.settings = settings or SinkSettings()
        self.sinks: list[ChannelSink] = []
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
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
        settings = budgeted(self.settings, len(self.specs))
        self.sinks = [ChannelSink(spec, self.config_of(spec.owner_id), codec, self._dead_letters, settings,
                                  self._stop) for spec in self.specs]

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
            t = threading.Thread(target=self._run_one, args=(sink,), name=f"sink-{sink.name}", daemon=True)
            t.start()
            self._threads.append(t)

    def _run_one(self, sink: ChannelSink) -> None:
        from connectors.migrate.fleet import before_sink

        def state(status: str, error: str | None) -> None:
            sink.status, sink.last_error = status, error

        try:
            if before_sink(self.topology, sink.spec.owner_id, self._stop, state):  # extension scripts first
                sink.run()
        except Exception as e:
            if sink.status != "failed":  # raised before the sink's own handler, which logs and marks it
                sink.status, sink.last_error = "failed", f"{type(e).__name__}: {e}"
                log.error("sink %s not started: %s", sink.name, sink.last_error, exc_info=True)

    def stop(self) -> None:
        """Ask every sink to finish its current batch and stop."""
        self._stop.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every sink has stopped (or ``timeout`` passed; signals stay serviceable).

        True if all stopped and none failed.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        for t in self._threads:
            while t.is_alive():
                if deadline is not None and time.monotonic() >= deadline:
                    return False
                t.join(0.5)
        self.close()
        return not self.failed()

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
