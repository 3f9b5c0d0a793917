"""The faust adapter: one agent (concurrency 1) feeding ``Router.handle``, at-least-once.

- Source: the per-table topics of every download subjob (created if missing, with capture's
  spec), raw bytes, tombstones included. Consumer group ``<prefix>-router``; more workers split
  the partitions.
- Acks are manual (``stream.noack()``): an event is acked only after ``handle`` returned, so
  its routed records were handed to the producer first; faust flushes the producer before it
  commits offsets. faust's own acking would ack an event whose processing raised (the stream's
  ``finally``), so any error stops the worker instead (exit 1): nothing after the failed
  record is routed, nothing from it on is committed, a restart routes it again.
- A timer (``reload_interval``) applies topology revisions (``cdx.topology.live``: the control
  topic, or the file in development; SIGHUP checks at once) in place, or, when the change needs
  new source topics or another Kafka, stops the worker gracefully so that ``run`` starts it again
  with the new revision (offsets are committed first).
  It also activates idle partitions after every assignment (``Router.activate_assigned``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import faust

from cdx.errors import CdxError, ConfigError, RetriableError
from cdx.kafka.admin import COMPACTED, TopicSpec, ensure_topics
from cdx.stage.backoff import Backoff
from cdx.streams import metrics
from cdx.streams.router import Router, ensure_router_topics, group_id
from cdx.streams.routing import RoutingPlan
from cdx.streams.security import faust_credentials
from cdx.streams.transport import RouterProducer, RouterTransport
from cdx.topology import Topology
from cdx.topology.live import LiveTopology

log = logging.getLogger("cdx.router")


class RouterApp(faust.App):
    """``faust.App`` on ``cdx.streams.transport.RouterTransport`` (read_committed, idempotent producer)."""

    def _new_transport(self) -> Any:
        return RouterTransport(self.conf.broker_consumer, self)

    def _new_producer_transport(self) -> Any:
        return RouterTransport(self.conf.broker_producer, self)


@dataclass
class Runtime:
    """A built router worker: the faust app, the router, and what the timer watches."""

    app: faust.App
    router: Router
    live: LiveTopology | None
    subscribed: list[str]
    restart: str | None = None
    reload_requested: bool = False
    assigned_pending: bool = True
    _ticking: asyncio.Lock = field(default_factory=asyncio.Lock)

    def assignment(self) -> list[tuple[str, int]]:
        return [(tp.topic, tp.partition) for tp in self.app.consumer.assignment()]

    async def tick(self) -> None:
        """Reload when a new revision is there (SIGHUP: check now); activate partitions after a rebalance."""
        async with self._ticking:
            if self.reload_requested:
                self.reload_requested = False
                if self.live is not None:
                    self.live.wake()
            await self.maybe_reload()
            if self.assigned_pending and not self.app.rebalancing:
                self.assigned_pending = False
                await self.router.activate_assigned(self.assignment())

    async def maybe_reload(self) -> None:
        if self.live is None:
            return
        cand = self.live.poll()
        if cand is None:
            return
        topology = cand.topology
        if topology != self.router.topology:
            why = self.router.needs_restart(topology, self.subscribed)
            if why:
                log.warning("router: restarting to apply topology %s (%s)", cand.label, why)
                self.restart = why
                os.kill(os.getpid(), signal.SIGTERM)
                return
            await self.router.reload(topology, self.assignment())
            metrics.RELOADS.inc()
        self.live.accept(cand)


def build(topology: Topology, *, live: LiveTopology | None, datadir: Path, web_port: int | None = None,
          reload_interval: float = 1.0, session_timeout: float = 10.0, instance_id: str | None = None) -> Runtime:
    """Create the topics and the faust app of a router worker (not started): at-least-once, manual acks, no
    topic declaration.

    ``session_timeout``: how long a dead worker keeps its partitions. ``instance_id``: Kafka static
    membership; a worker restarted with the same id takes its partitions back without waiting.
    """
    k = topology.kafka
    plan = RoutingPlan(topology)
    if not plan.source_topics:
        raise ConfigError("the topology has no download subjob: nothing to route")
    ensure_topics(k.client_config(), [TopicSpec(t, k.default_partitions, k.replication_factor, COMPACTED)
                                      for t in plan.source_topics])
    ensure_router_topics(topology, plan)
    app = RouterApp(
        group_id(topology), broker=[f"kafka://{h}" for h in k.bootstrap_servers.split(",")],
        processing_guarantee="at_least_once", store="memory://", datadir=str(datadir),
        web_enabled=web_port is not None, web_port=web_port or 6066,
        topic_allow_declare=False, topic_disable_leader=True, consumer_auto_offset_reset="earliest",
        producer_acks=-1, producer_linger=0.005, producer_max_batch_size=262_144,
        broker_commit_interval=1.0, stream_wait_empty=True, autodiscover=False,
        broker_session_timeout=session_timeout, broker_heartbeat_interval=min(3.0, session_timeout / 3),
        consumer_group_instance_id=instance_id, broker_credentials=faust_credentials(k.security),
    )
    router = Router(topology)
    cast(RouterProducer, app.producer).flush_hooks.append(router.sender.flush)
    rt = Runtime(app, router, live, plan.source_topics)
    _add_route_agent(app, router, plan.source_topics)
    _add_tick(app, rt, reload_interval)
    return rt


def _add_route_agent(app: RouterApp, router: Router, source_topics: Any) -> None:
    """The agent routing every record of the table topics; a record that fails for good ends the process."""
    source = app.topic(*source_topics, key_serializer="raw", value_serializer="raw", allow_empty=True)

    async def route(stream: Any) -> None:
        manual = stream.noack()
        async for event in manual.events():
            m = event.message
            try:
                await _handle(router, m.topic, m.partition, m.offset, m.key, m.value)
            except BaseException as exc:
                log.critical("router: stopping, %s[%d]@%d failed: %r", m.topic, m.partition, m.offset, exc,
                             exc_info=not isinstance(exc, CdxError))
                os._exit(1)  # no commit past this record; see the module docstring
            await manual.ack(event)

    app.agent(source, name="cdx-router", concurrency=1)(route)


def _add_tick(app: RouterApp, rt: Runtime, reload_interval: float) -> None:
    """The timer (and SIGHUP) taking topology revisions, and the hook noting new assignments."""
    router = rt.router

    async def tick() -> None:
        try:
            await rt.tick()
        except Exception as exc:
            log.critical("router: stopping, topology reload/activation failed: %r", exc, exc_info=True)
            os._exit(1)

    app.timer(reload_interval, name="cdx-router-tick")(tick)

    def on_sighup() -> None:
        rt.reload_requested = True
        app.loop.create_task(tick())

    async def on_start() -> None:
        app.loop.add_signal_handler(signal.SIGHUP, on_sighup)

    app.task(on_start)

    async def on_assigned(_sender: Any, *_args: Any, **_kw: Any) -> None:
        router.on_assigned()
        rt.assigned_pending = True

    app.on_partitions_assigned.connect(cast(Any, on_assigned))


async def _handle(router: Router, topic: str, partition: int, offset: int, key: bytes | None,
                  value: bytes | None) -> None:
    backoff: Backoff | None = None  # made on the first failure only: this runs for every record
    while True:
        try:
            await router.handle(topic, partition, offset, key, value)
            return
        except RetriableError as exc:
            backoff = backoff or Backoff(initial=0.5, maximum=30.0)
            log.warning("router: %s[%d]@%d: %s; retrying in %.1fs", topic, partition, offset, exc, backoff.peek())
            await asyncio.sleep(backoff.next())
