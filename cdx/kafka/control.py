"""The topology control topics: published revisions and the revision each role runs.

``<prefix>._topology`` (compacted, one partition): key = the topology's name (its HQ's name), value =
a :class:`Revision` as JSON: revision number, SHA-256 of the text, the validated file text (with its
``${VAR}`` references unresolved: every role resolves them in its own environment, secrets never
travel), the file it came from and when it was published. ``cdx topology apply`` publishes; every
role follows it with a :class:`RevisionWatcher`.

``<prefix>._topology_roles`` (compacted, one partition): key = ``<name>/<role>/<instance>``, value =
a :class:`RoleReport` (the revision the role runs, ``running`` or ``refused`` with the reason, when);
a role re-publishes it every :data:`HEARTBEAT_SECONDS` and writes a tombstone when it stops cleanly.
``cdx status`` reads them (:func:`read_role_reports`).

Contracts: publishing the text already published is a no-op (same revision returned); numbers only
grow (one ``apply`` at a time per topology: two concurrent ones may publish the same number, the
later record wins). Reading never blocks longer than its timeout.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition

from cdx.errors import ConfigError, RetriableError
from cdx.kafka.admin import COMPACTED, TopicSpec, ensure_topics, partitions_of
from cdx.kafka.config import producer_config
from cdx.kafka.reading import latest_values

log = logging.getLogger("cdx.control")

HEARTBEAT_SECONDS = 30.0
"""A running role re-publishes its report this often."""
STALE_AFTER_SECONDS = 3 * HEARTBEAT_SECONDS
"""A report older than this belongs to a role that is gone (killed without its tombstone)."""


def text_hash(text: str) -> str:
    """SHA-256 (hex) of a topology text, as published."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Revision:
    """One published revision of a topology."""

    name: str
    number: int
    sha256: str
    text: str
    source: str = ""
    published_at: float = 0.0

    @property
    def label(self) -> str:
        """``r<number>`` -- what logs and ``cdx status`` show."""
        return f"r{self.number}"

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode("utf-8")

    @classmethod
    def from_bytes(cls, raw: bytes) -> Revision:
        d = json.loads(raw)
        return cls(str(d["name"]), int(d["number"]), str(d["sha256"]), str(d["text"]), str(d.get("source", "")),
                   float(d.get("published_at", 0.0)))


@dataclass(frozen=True)
class RoleReport:
    """What one role instance runs: ``revision`` (``r3``, or ``file <hash>`` in development),
    ``state`` ``running`` or ``refused`` (then ``detail`` says why it kept ``revision``)."""

    topology: str
    role: str
    instance: str
    revision: str
    sha256: str
    state: str = "running"
    detail: str = ""
    refused: str = ""
    """The revision it refused (empty when none)."""
    host: str = ""
    pid: int = 0
    at: float = 0.0

    @property
    def key(self) -> str:
        return f"{self.topology}/{self.role}/{self.instance}"

    def stale(self, now: float | None = None) -> bool:
        return ((time.time() if now is None else now) - self.at) > STALE_AFTER_SECONDS

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def ensure_control_topics(config: Mapping[str, Any], topics: tuple[str, str], replication_factor: int) -> None:
    """The two control topics (revisions, role reports): one partition each, compacted."""
    ensure_topics(config, [TopicSpec(t, 1, replication_factor, COMPACTED) for t in topics])


def latest_revision(config: Mapping[str, Any], topic: str, name: str, timeout: float = 15.0) -> Revision | None:
    """The newest revision of topology ``name`` on ``topic``; None when none was ever published
    (or the topic does not exist). ``RetriableError`` when Kafka does not answer in ``timeout``."""
    try:
        if not partitions_of(config, topic):
            return None
        value = latest_values(config, topic, timeout).get(name)
        return Revision.from_bytes(value) if value else None
    except (KafkaException, TimeoutError) as exc:
        raise RetriableError(f"cannot read the topology control topic {topic}: {exc}") from exc


def deliver(producer: Producer, topic: str,
            records: Iterable[tuple[bytes, bytes | None] | tuple[bytes, bytes, Sequence[tuple[str, bytes]]]],
            timeout: float, what: str = "") -> None:
    """Produce ``records`` (key, value, optionally headers) to ``topic`` and wait until Kafka has them all (a
    full local queue is drained as it goes); ``RetriableError`` (``cannot write <what> to <topic>: <why>``)
    when one failed, the client failed or the flush timed out."""
    failures: list[KafkaError] = []
    doing = f"cannot write {what + ' ' if what else ''}to {topic}"

    def delivered(err: KafkaError | None, _msg: Any) -> None:
        if err is not None:
            failures.append(err)

    try:
        for key, value, *headers in records:
            while True:
                try:
                    producer.produce(topic, key=key, value=value, headers=list(headers[0]) if headers else None,
                                     on_delivery=delivered)
                    break
                except BufferError:
                    producer.poll(0.1)
        left = producer.flush(timeout)
    except KafkaException as exc:
        raise RetriableError(f"{doing}: {exc}") from exc
    if left or failures:
        why = failures[0].str() if failures else f"not acknowledged within {timeout:.0f}s"
        raise RetriableError(f"{doing}: {why}")


def publish_revision(config: Mapping[str, Any], topic: str, name: str, text: str,
                     source: str = "") -> tuple[Revision, bool]:
    """Publish ``text`` as the next revision of ``name`` (idempotent). Returns the revision in force
    and whether it is new: the text already published (same SHA-256) is not published again."""
    if not partitions_of(config, topic):
        raise ConfigError(f"the topology control topic {topic} does not exist: `cdx topology apply` (or"
                          " `cdx kafka apply`) creates it")
    digest = text_hash(text)
    latest = latest_revision(config, topic, name)
    if latest is not None and latest.sha256 == digest:
        return latest, False
    rev = Revision(name, (latest.number if latest else 0) + 1, digest, text, source, time.time())
    deliver(Producer(producer_config(config, linger_ms=0)), topic, [(name.encode(), rev.to_bytes())], 30.0)
    return rev, True


class RevisionWatcher:
    """Follows topology ``name`` on the control topic without a consumer group.

    ``poll()`` never blocks: it reads whatever arrived and returns the newest revision not returned
    before (None otherwise). The first poll after the topic appears returns the latest revision.
    A topic that does not exist yet is looked for again every ``recheck`` seconds."""

    def __init__(self, config: Mapping[str, Any], topic: str, name: str, recheck: float = 10.0) -> None:
        self._config = dict(config)
        self.topic, self.name, self.recheck = topic, name, recheck
        self._key = name.encode("utf-8")
        self._consumer: Consumer | None = None
        self._consumer_config = {**config, "group.id": f"cdx-topology-{uuid.uuid4().hex}", "enable.auto.commit": False,
                                 "auto.offset.reset": "earliest", "isolation.level": "read_committed",
                                 "enable.partition.eof": False}
        self._next_check = 0.0
        self._seen: Revision | None = None
        self.newest: Revision | None = None
        """The newest revision read so far (also after it was returned)."""

    def _assign(self) -> bool:
        if self._consumer is not None:
            return True
        if time.monotonic() < self._next_check:
            return False
        self._next_check = time.monotonic() + self.recheck
        try:
            if not partitions_of(self._config, self.topic):
                return False
        except (KafkaException, RetriableError) as exc:
            log.debug("control topic %s not described: %s", self.topic, exc)
            return False
        self._consumer = Consumer(self._consumer_config)
        self._consumer.assign([TopicPartition(self.topic, 0, OFFSET_BEGINNING)])
        return True

    def poll(self) -> Revision | None:
        if not self._assign():
            return None
        assert self._consumer is not None
        while True:
            msgs = self._consumer.consume(500, timeout=0)
            if not msgs:
                break
            for msg in msgs:
                value = msg.value()
                if msg.error() is None and msg.key() == self._key and value:
                    try:
                        self.newest = Revision.from_bytes(value)
                    except (ValueError, KeyError, TypeError) as exc:
                        log.error("control topic %s: unreadable revision at offset %s: %s", self.topic,
                                  msg.offset(), exc)
        if self.newest is not None and self.newest != self._seen:
            self._seen = self.newest
            return self.newest
        return None

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None


class RoleReporter:
    """Publishes the :class:`RoleReport` of one or more instances of a role (see module docstring).

    ``report`` is non-blocking (delivery happens in the background); ``heartbeat`` re-publishes every
    report every :data:`HEARTBEAT_SECONDS`; ``forget``/``close`` write tombstones. Kafka trouble is
    logged, never raised: a report is information, not part of the role's work."""

    def __init__(self, config: Mapping[str, Any], topic: str, topology: str, role: str) -> None:
        self.topic, self.topology, self.role = topic, topology, role
        self._producer = Producer(producer_config(config, linger_ms=50))
        self._reports: dict[str, RoleReport] = {}
        self._last_beat = time.monotonic()
        self._host, self._pid = socket.gethostname(), os.getpid()

    def report(self, instance: str, revision: str, sha256: str, *, refused: str = "", detail: str = "") -> None:
        rep = RoleReport(self.topology, self.role, instance, revision, sha256, "refused" if refused else "running",
                         detail, refused, self._host, self._pid, time.time())
        self._reports[instance] = rep
        self._send(rep.key, json.dumps(rep.to_json()).encode("utf-8"))

    def heartbeat(self) -> None:
        if time.monotonic() - self._last_beat < HEARTBEAT_SECONDS:
            self._producer.poll(0)
            return
        self._last_beat = time.monotonic()
        for instance, rep in list(self._reports.items()):
            self.report(instance, rep.revision, rep.sha256, refused=rep.refused, detail=rep.detail)

    def forget(self, instance: str) -> None:
        rep = self._reports.pop(instance, None)
        if rep is not None:
            self._send(rep.key, None)

    def _send(self, key: str, value: bytes | None) -> None:
        try:
            self._producer.produce(self.topic, key=key.encode("utf-8"), value=value)
            self._producer.poll(0)
        except (KafkaException, BufferError) as exc:
            log.warning("cannot report the topology revision to %s: %s", self.topic, exc)

    def close(self) -> None:
        for instance in list(self._reports):
            self.forget(instance)
        self._producer.flush(10)


def read_role_reports(config: Mapping[str, Any], topic: str, topology: str,
                      timeout: float = 15.0) -> list[RoleReport]:
    """The latest report of every role instance of ``topology`` (tombstoned ones left out), by key."""
    if not partitions_of(config, topic):
        return []
    latest = latest_values(config, topic, timeout)
    return sorted((RoleReport(**json.loads(v)) for k, v in latest.items() if k.startswith(f"{topology}/") and v),
                  key=lambda r: r.key)
