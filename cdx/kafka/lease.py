"""An active/standby lease for a single-writer role, held through Kafka's group coordinator.

Contract
- Every process of one role and identity (the capture of HQ ``hq``, the upload of channel ``s1``)
  joins the consumer group ``<prefix>-lease-<role>-<name>`` on the lease topic ``<prefix>._leases``
  (one partition, never written). The member the coordinator assigns partition 0 holds the lease
  and is **active**; the others wait (**standby**). Assignment is cooperative-sticky, so a standby
  joining never moves the lease away from a live holder; two processes started at once get one
  holder.
- A holder that dies (``kill -9``, host down) stops heartbeating; once ``session_timeout`` passed the
  coordinator assigns the partition to a standby. Takeover bound: ``session_timeout`` + one
  heartbeat interval + the role's set-up (``init_transactions``, re-reading its positions).
- A holder that stops cleanly calls :meth:`Lease.release` *after* its last transaction ended: it
  leaves the group and a standby takes over at once.
- The lease alone never guarantees one writer (a process paused past its session still believes it
  holds it). The role's ``transactional.id`` does: the new holder's ``init_transactions`` fences the
  old producer and completes or aborts its open transaction, and the role re-reads its positions
  only after that. A holder that learns it lost the lease (revoked or lost partition, e.g. resumed
  after SIGSTOP) calls ``on_lost`` at once, so it stops instead of trying again.
- Thread-safety: one background thread owns the consumer (poll, callbacks, close); the public
  methods only wait on events.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from prometheus_client import Counter, Gauge

from cdx.errors import FatalError, RetriableError
from cdx.kafka.admin import COMPACTED, TopicSpec, ensure_topics, partitions_of, topic_management
from cdx.kafka.lingering import admin_client
from cdx.stage.backoff import Backoff

log = logging.getLogger("cdx.lease")

ACTIVE = Gauge("cdx_role_active", "1 while this process holds its role's lease (active), 0 while standby",
               ["role", "name"])
TAKEOVERS = Counter("cdx_role_takeovers_total", "Times this process acquired its role's lease", ["role", "name"])
WAITED = Gauge("cdx_role_lease_wait_seconds", "Seconds this process waited as standby before its last takeover",
               ["role", "name"])

_DENIED = (KafkaError.GROUP_AUTHORIZATION_FAILED, KafkaError.TOPIC_AUTHORIZATION_FAILED)

DEFAULT_SESSION_TIMEOUT = 10.0
"""Seconds without a heartbeat before a dead holder's lease moves (Kafka's minimum is 6 by default)."""


def lease_spec(topic: str, replication_factor: int) -> TopicSpec:
    """The lease topic: one partition (its holder is the active process), compacted, never written."""
    return TopicSpec(topic, 1, replication_factor, COMPACTED)


class LeaseLost(FatalError):
    """Another process took this role's lease (this one was paused or cut off past its session)."""


def lease_group(prefix: str, role: str, name: str) -> str:
    """``<prefix>-lease-<role>-<name>``: the consumer group whose partition holder is active."""
    return f"{prefix}-lease-{role}-{name}"


def member_name() -> str:
    """``<hostname>:<pid>``: how this process appears in the group (``cdx status``)."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Lease:
    """The lease of one role (see module docstring): ``acquire`` blocks as standby; ``release`` hands over."""

    def __init__(self, config: Mapping[str, Any], topic: str, *, role: str, name: str, prefix: str,
                 replication_factor: int = 1, session_timeout: float = DEFAULT_SESSION_TIMEOUT,
                 on_lost: Callable[[], None] | None = None) -> None:
        self.role, self.name, self.topic = role, name, topic
        self.group = lease_group(prefix, role, name)
        self.replication_factor = replication_factor
        self.on_lost = on_lost
        heartbeat = max(250, min(1000, int(session_timeout * 1000) // 10))
        self._base = dict(config)
        self._config = {**config, "group.id": self.group, "client.id": member_name(),
                        "enable.auto.commit": False, "auto.offset.reset": "latest",
                        "partition.assignment.strategy": "cooperative-sticky",
                        "session.timeout.ms": int(session_timeout * 1000), "heartbeat.interval.ms": heartbeat,
                        "max.poll.interval.ms": max(60_000, int(session_timeout * 2000))}
        self._held = threading.Event()
        self._closing = threading.Event()
        self._closed = threading.Event()
        self._error: BaseException | None = None
        self.lost = False
        self._thread: threading.Thread | None = None
        ACTIVE.labels(role, name).set(0)

    @property
    def held(self) -> bool:
        return self._held.is_set() and not self.lost

    def acquire(self, stop: threading.Event) -> bool:
        """Join the group and wait until this process holds the lease (True) or ``stop`` is set
        (False). Kafka not answering is waited out; ``FatalError`` when the group cannot be joined at all
        (no right to read the lease topic or group: ``cdx kafka apply`` grants them)."""
        if self._thread is None:
            if not self._create_topic(stop):
                return False
            self._thread = threading.Thread(target=self._run, name=f"lease-{self.role}-{self.name}", daemon=True)
            self._thread.start()
        started = time.monotonic()
        announced = False
        while not stop.is_set():
            if self._error is not None:
                raise FatalError(f"{self.role} {self.name}: cannot join lease group {self.group} on {self.topic}:"
                                 f" {self._error}; with kafka.principals, `cdx kafka apply` grants Read on both")
            if self._held.wait(0.2):
                waited = time.monotonic() - started
                WAITED.labels(self.role, self.name).set(waited)
                TAKEOVERS.labels(self.role, self.name).inc()
                log.info("%s %s: active (lease %s held by %s after %.1fs)", self.role, self.name, self.group,
                         member_name(), waited)
                return True
            if not announced and time.monotonic() - started > 3.0:
                announced = True
                log.info("%s %s: standby; another process holds lease %s (cdx status shows which)",
                         self.role, self.name, self.group)
        return False

    def _create_topic(self, stop: threading.Event, max_backoff: float = 30.0) -> bool:
        """Create the lease topic if missing, retrying while Kafka does not answer (False: stopped)."""
        backoff = Backoff(initial=min(0.5, max_backoff), maximum=max_backoff)
        while not stop.is_set():
            try:
                if topic_management():
                    ensure_topics(self._base, [lease_spec(self.topic, self.replication_factor)])
                elif not partitions_of(self._base, self.topic):  # its settings need DescribeConfigs: not granted
                    raise FatalError(f"kafka.manage_topics is false and the lease topic {self.topic} does not exist:"
                                     " run `cdx kafka apply` with the topology, then start this again")
                return True
            except RetriableError as exc:
                log.warning("%s %s: lease topic %s: %s; retrying in %.1fs", self.role, self.name, self.topic, exc,
                            backoff.peek())
                backoff.wait(stop)
        return False

    def confirmed(self, timeout: float = 10.0) -> bool:
        """True when this process holds the lease and the group coordinator names it the holder (a lost
        producer then means a coordinator move, not a takeover); False when another process holds it;
        ``RetriableError`` when the coordinator cannot tell now (it is moving or loading)."""
        if not self.held:
            return False
        try:
            state = describe_leases(self._base, [self.group], timeout).get(self.group)
        except (KafkaException, TimeoutError) as exc:
            raise RetriableError(f"{self.role} {self.name}: cannot describe lease group {self.group}: {exc}") from exc
        if state is None or state.active is None:
            raise RetriableError(f"{self.role} {self.name}: the coordinator of lease group {self.group} cannot"
                                 " tell its holder yet (moving?)")
        return self.held and state.active == member_name()

    def release(self, timeout: float = 30.0) -> None:
        """Leave the group (idempotent): a standby takes over at once. Call after the last transaction."""
        if self._closing.is_set():
            return
        self._closing.set()
        if self._thread is not None:
            self._closed.wait(timeout)
            log.info("%s %s: left lease group %s%s", self.role, self.name, self.group,
                     " (a standby takes over now)" if self.held else "")
        self._held.clear()
        ACTIVE.labels(self.role, self.name).set(0)

    # ------------------------------------------------------------------ the consumer thread
    def _run(self) -> None:
        try:
            consumer = Consumer(dict(self._config))
        except KafkaException as exc:
            self._error = exc
            self._closed.set()
            return
        try:
            consumer.subscribe([self.topic], on_assign=self._assigned, on_revoke=self._revoked,
                               on_lost=self._lost)
            while not self._closing.is_set():
                msg = consumer.poll(0.2)
                err = msg.error() if msg is not None else None
                if err is not None and (err.fatal() or err.code() in _DENIED):
                    self._error = KafkaException(err)
                    self._take_away("a fatal consumer error")
                    break
        finally:
            try:
                consumer.close()
            except (KafkaException, RuntimeError) as exc:
                log.warning("%s %s: leaving lease group %s: %s", self.role, self.name, self.group, exc)
            self._closed.set()

    def _assigned(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if any(p.partition == 0 for p in partitions) and not self.lost:
            self._held.set()
            ACTIVE.labels(self.role, self.name).set(1)

    def _revoked(self, _consumer: Consumer, partitions: list[TopicPartition], how: str = "revoked") -> None:
        if any(p.partition == 0 for p in partitions) and not self._closing.is_set():
            self._take_away(how)

    def _lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._revoked(consumer, partitions, "lost (session expired)")

    def _take_away(self, how: str) -> None:
        if not self._held.is_set() or self.lost:
            return
        self.lost = True
        ACTIVE.labels(self.role, self.name).set(0)
        log.error("%s %s: lease %s %s; another process is taking over, this one stops", self.role, self.name,
                  self.group, how)
        if self.on_lost is not None:
            self.on_lost()


@dataclass(frozen=True)
class LeaseState:
    """Who holds a lease (``host:pid``, None when nobody does) and who waits, as the coordinator sees it."""

    group: str
    active: str | None
    standby: tuple[str, ...]

    def describe(self) -> str:
        if self.active is None and not self.standby:
            return "no lease member"
        who = f"active on {self.active}" if self.active else "no active member (taking over)"
        return who + (f"; standby {', '.join(self.standby)}" if self.standby else "; no standby")


def describe_leases(config: Mapping[str, Any], groups: list[str], timeout: float = 10.0) -> dict[str, LeaseState]:
    """The state of each lease group (``AdminClient.describe_consumer_groups``; read-only); a group whose
    coordinator is moving is left out (unknown). A member killed with ``kill -9`` stays listed until its
    session timeout passed."""
    if not groups:
        return {}
    out = {}
    with admin_client(config) as admin:
        futures = admin.describe_consumer_groups(sorted(set(groups)), request_timeout=timeout)
        for group, future in futures.items():
            try:
                desc = future.result(timeout)
            except KafkaException as exc:
                if exc.args[0].retriable() or exc.args[0].code() in (KafkaError.NOT_COORDINATOR,
                                                                     KafkaError.COORDINATOR_LOAD_IN_PROGRESS):
                    continue  # the coordinator is moving or loading: unknown for now
                raise
            active, standby = None, []
            for m in desc.members or ():
                parts = m.assignment.topic_partitions if m.assignment is not None else []
                if parts:
                    active = m.client_id
                else:
                    standby.append(m.client_id)
            out[group] = LeaseState(group, active, tuple(sorted(standby)))
    return out
