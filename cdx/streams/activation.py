"""Activation, backfill and reload for the transactional engine (``cdx.streams.engine``).

**Activation** of a source partition tp at position P (the offset this worker routes next: what
it committed, else the group's committed offset, else the low watermark) happens before any
record of tp is routed: the key state and the progress topic are re-read (another worker may
have routed tp until the last rebalance), then every group of the plan whose progress on tp is
below P is **backfilled**: tp's records from that group's progress up to P are read
(read_committed) and routed to the lagging groups only, in transactions of ``cdx.streams.reroute.CHUNK`` records that
also advance their progress. Each backfill transaction carries the group metadata
(``send_offsets_to_transaction`` of P itself), so a worker that lost tp in a rebalance is fenced
instead of routing it twice.

**Reload** (file changed, SIGHUP): pairs (group, topic) the new topology drops lose their
progress; the new plan takes over between two batches and every assigned partition is activated
again, which backfills new pairs from the beginning and **re-routes** the partition to groups whose
shape of the table changed (new columns, other legal entities or filter column: ``cdx.streams.reroute``).
A change that needs new source topics or another Kafka stops the loop and re-executes the process.

**Upgrade from the faust engine**: a pair without progress whose faust bootstrap entry
(``<prefix>._router_state``) is done counts as routed up to P.
"""

from __future__ import annotations

import logging

from confluent_kafka import TopicPartition

from cdx.kafka.admin import COMPACTED, TopicSpec, ensure_topics
from cdx.kafka.reading import low_watermarks
from cdx.streams import metrics
from cdx.streams.engine_state import TP, EngineState
from cdx.streams.progress import encode_key
from cdx.streams.reroute import Rerouter, route_below
from cdx.streams.router import ensure_router_topics, group_topic_specs, needs_restart
from cdx.streams.routing import RoutingPlan
from cdx.streams.state import RouterState
from cdx.topics import router_keys_topic as keys_topic
from cdx.topics import router_progress_topic as progress_topic
from cdx.topics import router_state_topic as state_topic
from cdx.topology import Topology

log = logging.getLogger("cdx.router")


def ensure_engine_topics(topology: Topology, plan: RoutingPlan) -> None:
    """Source topics (capture's spec) and the engine's two state topics if missing; group, schemas, DLQ."""
    k = topology.kafka
    ensure_topics(k.client_config(), [
        *(TopicSpec(t, k.default_partitions, k.replication_factor, COMPACTED) for t in plan.source_topics),
        *(TopicSpec(t(k.topic_prefix), 1, k.replication_factor, COMPACTED) for t in (keys_topic, progress_topic))])
    ensure_router_topics(topology, plan)


class Activator:
    def __init__(self, engine: EngineState) -> None:
        self.e = engine
        self._legacy: RouterState | None = None
        self.rerouter = Rerouter(engine)

    # ------------------------------------------------------------------ activation
    def activate(self, tps: list[TP]) -> None:
        e = self.e
        e.keys.restore()
        e.progress.sync()
        committed = {(x.topic, x.partition): x.offset for x in
                     e.consumer.committed([TopicPartition(t, p) for t, p in tps], timeout=30) if x.offset >= 0}
        for tp in tps:
            topic, p = tp
            if e.plan.subjob_of(topic) is not None:
                pos = e.processed.get(tp, committed.get(tp, -1))
                if pos < 0:
                    pos = low_watermarks(e.config, topic).get(p, 0)
                behind: dict[str, int] = {}
                for g in e.plan.groups_of(topic):
                    n = e.progress.get(g, topic, p)
                    n = self._legacy_next(g, tp, pos) if n is None else n
                    if n < pos:
                        behind[g] = n
                    elif n > pos:
                        log.warning("router: progress of %s on %s[%d] (%d) is ahead of the position %d", g, topic,
                                    p, n, pos)
                if behind:
                    self._backfill(tp, behind, pos)
                self.rerouter.reshape(tp, pos)
            e.active.add(tp)

    def _legacy_next(self, group: str, tp: TP, pos: int) -> int:
        if self._legacy is None:
            e = self.e
            self._legacy = RouterState(e.config, state_topic(e.topology.kafka.topic_prefix), e.producer)
            self._legacy.sync()
        entry = self._legacy.get(group, *tp)
        return pos if entry is not None and entry.done else 0

    def _backfill(self, tp: TP, behind: dict[str, int], end: int) -> None:
        """Route tp's records up to ``end`` to the groups ``behind`` (from their progress on), and their progress."""
        log.info("router: backfilling %s[%d] up to %d for %s", tp[0], tp[1], end, behind)

        def progress(upto: int) -> None:
            self.e.write_progress({tp: upto}, {tp: [g for g, n in behind.items() if n < upto]})

        sent = route_below(self.e, tp, behind, end, progress)
        metrics.BACKFILLED.inc(sent)
        log.info("router: backfilled %s[%d]: %d records sent", tp[0], tp[1], sent)

    # ------------------------------------------------------------------ reload
    def maybe_reload(self) -> None:
        """Offer the next topology revision (control topic, or the file in development) to the router:
        applied in place between two transactions, or a graceful restart when it needs new source
        topics or another Kafka (``e.restart``). SIGHUP checks at once."""
        e = self.e
        if e.live is None:
            return
        if e.reload_requested:
            e.reload_requested = False
            e.live.wake()
        e.live.offer(self._take)

    def _take(self, topology: Topology) -> None:
        e = self.e
        if topology == e.topology:
            return
        why = needs_restart(e.topology, topology, e.plan.source_topics)
        if why:
            log.warning("router: restarting to apply the new topology (%s)", why)
            e.restart = why
            return
        self.apply(topology)

    def apply(self, topology: Topology) -> None:
        e = self.e
        plan = RoutingPlan(topology)
        ensure_topics(topology.kafka.client_config(), group_topic_specs(plan))
        e.progress.sync()
        gone = e.plan.pairs() - plan.pairs()
        stale = e.progress.keys_for(gone)
        if stale:
            with e.txn.run(None, e.consumer):
                for k in stale:
                    e.progress.set(k, None)
                    e.router.produce(e.progress.topic, encode_key(k), None, None)
        added = plan.pairs() - e.plan.pairs()
        e.topology, e.plan, e.router.plan = topology, plan, plan
        e.active.clear()
        metrics.RELOADS.inc()
        log.info("router: topology reloaded: %d source topics, %d groups; pairs added %s, removed %s",
                 len(plan.source_topics), len(plan.group_topics), sorted(added), sorted(gone))
