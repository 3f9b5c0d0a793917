"""In-process recovery of the transactional router (``cdx.streams.engine``) from a lost producer.

A broker failover can fence the router's producer although no other router runs: the transaction
coordinator of its ``transactional.id`` moves and aborts the open transaction with a bumped producer
epoch; librdkafka reports ``PRODUCER_FENCED`` / ``INVALID_PRODUCER_EPOCH`` or another fatal error, and
the producer instance must be destroyed (``cdx.kafka.transactions.ProducerLost``). Like Kafka Streams
("task migrated": close dirty, re-create the producer), but keeping the consumer's group membership (the
group coordinator fences members, not the transaction coordinator), and with it the partitions:

1. ``Transaction`` drops what the lost transaction held (key-state and progress overlays, the router's
   batch, schemas it published) and raises ``Transaction.Lost``, a retriable error: the stage loop
   rewinds and backs off (``cdx.stage.backoff.Backoff``; a failed attempt below is retriable in turn);
2. before the next batch ``recover`` creates a new producer with the same ``transactional.id``
   (``init_transactions`` aborts what the lost one left open and takes a new epoch);
3. re-reads the key state and the progress, seeks every assigned partition back to the group's committed
   offset and activates them again (``cdx.streams.activation``): routing goes on from exactly what is
   committed, so read_committed readers see nothing twice and miss nothing.

**Replaced, not moved**: another live worker with the same instance id (same ``--instance-id``, or the same
host and ``--datadir``) shares the transactional id; recovering would fence it in turn. With
``--instance-id`` (static membership) its consumer fences ours, a fatal consumer error; otherwise the group
lists another member with our ``client.id``. Either way the worker stops with exit 1. A twin that has not
joined the group yet fences us again and again: more than ``LIMIT`` failures (fences and failed attempts)
within ``WINDOW`` seconds (``cdx.stage.budget.FailureBudget``) also stop the worker; a broker failover
costs one or two.
"""

from __future__ import annotations

import logging
import time
from typing import Protocol

from confluent_kafka import OFFSET_BEGINNING, KafkaException, TopicPartition

from cdx.errors import FatalError, RetriableError
from cdx.kafka.lingering import admin_client
from cdx.kafka.transactions import producer_lost
from cdx.stage.budget import LIMIT, WINDOW, FailureBudget
from cdx.streams.engine_state import EngineState
from cdx.streams.router import group_id

log = logging.getLogger("cdx.router")


class RecoverableEngine(EngineState, Protocol):
    """What ``Recovery`` uses of the transactional engine besides its state."""

    client_id: str
    instance_id: str

    def replace_producer(self) -> None:
        """A new producer with the same transactional id (``init_transactions`` aborts the lost one's)."""


class Recovery:
    """Recovers an ``Engine`` from a lost producer (see the module docstring)."""

    def __init__(self, engine: RecoverableEngine, *, limit: int = LIMIT, window: float = WINDOW) -> None:
        self.e = engine
        self.budget = FailureBudget("router: lost producers (another worker with the same instance id?)",
                                    limit=limit, window=window)
        self.recoveries = 0

    def recover(self, cause: BaseException) -> None:
        """One attempt: replace the lost producer and go on from what is committed. ``FatalError`` when the
        worker was replaced or failed too often; ``KafkaException``/``RetriableError`` when the attempt failed."""
        e = self.e
        failures = self.budget.spend(cause)
        if producer_lost(cause):
            self._check_not_replaced(cause)
        log.warning("router: producer lost (%s); recovery attempt (%d failures in the last %.0f s): new producer,"
                    " state re-read, committed offsets", cause, failures, self.budget.window)
        e.replace_producer()
        self._from_committed()
        self.recoveries += 1
        log.warning("router: recovered from a lost producer (%d recoveries so far); routing from the committed"
                    " offsets of %d partitions", self.recoveries, len(e.assigned))

    def _from_committed(self) -> None:
        e = self.e
        e.keys.restore()
        e.progress.sync()
        tps = [TopicPartition(t, p) for t, p in sorted(e.assigned)]
        for tp in e.consumer.committed(tps, timeout=30) if tps else []:
            if tp.error is not None:
                raise RetriableError(f"committed offset of {tp.topic}[{tp.partition}]: {tp.error}")
            e.consumer.seek(TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_BEGINNING))
        e.processed.clear()
        e.active.clear()  # activated again before their next record: backfills resume from the progress

    def _check_not_replaced(self, cause: BaseException) -> None:
        """Raise ``FatalError`` when another live member of the group has our ``client.id``. A member listed
        with our ``client.id`` may also be this worker's own earlier membership (the consumer rejoined while
        the coordinator moved), which the group drops after the session timeout: only a member still listed
        after that is a twin."""
        first = self._twins()
        if not first:
            return
        session_s = int(self.e.config.get("session.timeout.ms", 10_000)) / 1000
        log.warning("router: the group lists another member with our client.id (%s); checking again after the"
                    " session timeout (%.0f s)", ", ".join(sorted(first)), session_s + 2)
        time.sleep(session_s + 2)
        twins = first & self._twins()
        if twins:
            raise FatalError(f"router: replaced: another worker with instance id {self.e.instance_id} is in the"
                             f" group {group_id(self.e.topology)} (member {min(twins)}); this one stops (cause:"
                             f" {cause})") from cause

    def _twins(self) -> set[str]:
        """Member ids of the router's group, other than ours, with our ``client.id`` (empty when unknown)."""
        e = self.e
        group = group_id(e.topology)
        try:
            with admin_client(e.config) as admin:  # referenced until the result (kept on a timeout)
                desc = admin.describe_consumer_groups([group], request_timeout=15)[group].result(20)
        except (KafkaException, TimeoutError) as exc:  # advisory: the failure limit still applies
            log.warning("router: cannot describe the group %s to check for a twin worker (%s)", group, exc)
            return set()
        me, client = e.consumer.memberid(), e.client_id
        return {m.member_id for m in desc.members or () if m.client_id == client and m.member_id != me}
