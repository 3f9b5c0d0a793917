"""A running role's topology: the revision it runs, and newer ones as they are published.

Where revisions come from: the control topic ``<prefix>._topology`` (``cdx topology apply`` publishes,
see :mod:`cdx.kafka.control`); in development, while no revision was ever published there, the
topology file itself (a changed content, checked by mtime then SHA-256, is a new revision labelled
``file <hash>``). Once a revision is published the file is no longer watched.

How a role uses it, between two batches (never inside one)::

    live = LiveTopology.start(path, "upload", instances=["store-1"])
    ...
    live.offer(self.reload)     # reload(topology) raises CdxError when it cannot take it

``offer`` takes the next candidate (if any), calls the role's ``reload``; on success the role runs
it and reports it; on a ``RetriableError`` (a database or Kafka not answering) it is offered again at
the next call; on any other ``CdxError`` (invalid text, or invalid for this role: its channel removed, a
table missing) the role keeps the revision it runs, logs why and reports ``refused`` with the reason,
and the candidate is not offered again. ``reload`` must leave the role unchanged when it raises.
Every report goes to ``<prefix>._topology_roles`` (what ``cdx status`` shows).

Who the control clients (the reads at start, the watcher, the reporter) log in as: see
:func:`control_config`. A process serving channels passes ``serves`` to ``start`` (the owner ids it
serves in a topology); the identity is chosen once, from the file, and kept for the process's life.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from cdx.errors import CdxError, FatalError, RetriableError
from cdx.kafka.control import Revision, RevisionWatcher, RoleReporter, ensure_control_topics, latest_revision, text_hash
from cdx.kafka.reach import require_kafka
from cdx.topics import topology_roles_topic, topology_topic
from cdx.topology.loader import load_topology_text, read_text
from cdx.topology.root import Topology

log = logging.getLogger("cdx.topology")


def topology_name(topology: Topology) -> str:
    """The key of a topology on the control topic: its HQ's name."""
    return topology.hq.name


def file_label(sha256: str) -> str:
    return f"file {sha256[:12]}"


def control_config(topology: Topology, owners: Iterable[str] = ()) -> dict[str, str]:
    """The librdkafka settings of a process's topology control clients.

    A process serving channels or offline registers (``owners``: ``cdx sink``, ``cdx channel upload``,
    ``cdx offline-sync``) logs them in as one of its own: the first of ``owners`` in owner-id order
    (case-insensitive) that has an identity in ``kafka.principals.channels`` -- every channel principal
    may read the revisions and write role reports (``cdx.deploy.acls``), and the process holds the
    passwords of the channels it serves. Without ``owners``, or when none has an identity:
    ``kafka.security`` (which ``CDX_KAFKA_PRINCIPAL`` sets to a role's identity)."""
    k = topology.kafka
    return {"bootstrap.servers": k.bootstrap_servers, **k.shared_security(sorted(owners, key=str.casefold))}


def _control_topics(topology: Topology, config: dict[str, str]) -> None:
    """Create both control topics if missing (compacted, before a report could auto-create one with
    the broker's defaults); without topic management (or the right to create) only warn."""
    k = topology.kafka
    try:
        ensure_control_topics(config, (topology_topic(k.topic_prefix), topology_roles_topic(k.topic_prefix)),
                              k.replication_factor)
    except FatalError as exc:
        log.warning("topology control topics: %s (`cdx kafka apply` creates them)", exc)


@dataclass(frozen=True)
class Candidate:
    """A revision offered to a role: the parsed topology, its label (``r3``, ``file ab12...``), hash."""

    topology: Topology
    label: str
    sha256: str


class LiveTopology:
    """See the module docstring. ``current``/``label``/``sha256``: what the role runs; ``control_config``:
    the settings its control clients log in with."""

    def __init__(self, topology: Topology, label: str, sha256: str, path: Path | None, role: str,
                 instances: Iterable[str], *, interval: float = 1.0, owners: Iterable[str] = ()) -> None:
        self.current, self.label, self.sha256 = topology, label, sha256
        self.path, self.role, self.interval = path, role, interval
        k = topology.kafka
        config = self.control_config = control_config(topology, owners)
        self.watcher = RevisionWatcher(config, topology_topic(k.topic_prefix), topology_name(topology))
        self.reporter = RoleReporter(config, topology_roles_topic(k.topic_prefix), topology_name(topology), role)
        self._stat = self._file_stat()
        self._next = 0.0
        self._refused: tuple[str, str] | None = None
        self._retry: Candidate | None = None
        self.instances: list[str] = []
        self.set_instances(instances)

    @classmethod
    def start(cls, path: Path | str, role: str, instances: Iterable[str], *, interval: float = 1.0,
              serves: Callable[[Topology], Iterable[str]] | None = None) -> LiveTopology:
        """The topology a role starts with: the latest published revision if there is one and it is
        valid here, else the file (also when Kafka does not answer: the first ``offer`` catches up).
        ``serves``: the owner ids the process serves in a topology (called once, on the file's); its
        control clients then log in as one of them (:func:`control_config`)."""
        p = Path(path)
        text = read_text(p)
        digest = text_hash(text)
        topology = load_topology_text(text, str(p))
        owners = list(serves(topology)) if serves is not None else []
        live = cls(topology, file_label(digest), digest, p, role, [], interval=interval, owners=owners)
        k = topology.kafka
        try:
            require_kafka(k.bootstrap_servers)  # a closed port answers at once, not after the timeout
            _control_topics(topology, live.control_config)
            rev = latest_revision(live.control_config, topology_topic(k.topic_prefix), topology_name(topology),
                                  timeout=10.0)
        except RetriableError as exc:
            log.warning("%s: starting with %s (%s); published revisions are followed once Kafka answers",
                        role, p, exc)
            rev = None
        if rev is not None and rev.sha256 != digest:
            cand = live._parse(rev)
            if cand is not None:
                live.current, live.label, live.sha256 = cand.topology, cand.label, cand.sha256
                log.info("%s: running the published revision %s; %s differs (roll it out with"
                         " `cdx topology apply %s`)", role, rev.label, p, p)
        elif rev is not None:
            live.label = rev.label
        live.set_instances(instances)
        return live

    # ----------------------------------------------------------------------------- reports
    def set_instances(self, names: Iterable[str]) -> None:
        """The instances this process reports for (a sink per database, an uploader per channel...)."""
        wanted = list(dict.fromkeys(names))
        for gone in set(self.instances) - set(wanted):
            self.reporter.forget(gone)
        for name in wanted:
            if name not in self.instances:
                self._report(name)
        self.instances = wanted

    def _report(self, name: str) -> None:
        refused, why = self._refused or ("", "")
        self.reporter.report(name, self.label, self.sha256, refused=refused, detail=why)

    # ----------------------------------------------------------------------------- revisions
    def _parse(self, rev: Revision) -> Candidate | None:
        try:
            topology = load_topology_text(rev.text, f"topology revision {rev.label}")
        except CdxError as exc:
            self.refuse(rev.label, f"invalid here: {exc}")
            return None
        return Candidate(topology, rev.label, rev.sha256)

    def _file_stat(self) -> tuple[float, int] | None:
        try:
            st = self.path.stat() if self.path is not None else None
        except OSError:
            return None
        return (st.st_mtime, st.st_size) if st is not None else None

    def _from_file(self) -> Candidate | None:
        stat = self._file_stat()
        if self.path is None or stat is None or stat == self._stat:
            return None
        self._stat = stat
        try:
            text = read_text(self.path)
            digest = text_hash(text)
            if digest == self.sha256:
                return None
            return Candidate(load_topology_text(text, str(self.path)), file_label(digest), digest)
        except CdxError as exc:
            self.refuse(f"{self.path} as changed", str(exc))
            return None

    def _due(self, interval: float) -> bool:
        """Heartbeat the reports; True (and the next check ``interval`` from now) when a check is due."""
        self.reporter.heartbeat()
        if time.monotonic() < self._next:
            return False
        self._next = time.monotonic() + interval
        return True

    def poll(self) -> Candidate | None:
        """The next revision to offer (at most one check per ``interval``), or None."""
        if not self._due(self.interval):
            return None
        rev = self.watcher.poll()
        if rev is not None:
            if rev.sha256 == self.sha256:
                if self.label != rev.label:
                    self.label = rev.label  # the file we run was published as it is
                    self._refused = None
                    self._report_all()
                return None
            return self._parse(rev)
        if self.watcher.newest is None:
            return self._from_file()
        return None

    def offer(self, reload: Callable[[Topology], None]) -> bool:
        """Offer the next revision to ``reload`` (see module docstring); True if the role took one."""
        cand = self._retry_due() if self._retry is not None else self.poll()
        if cand is None:
            return False
        try:
            reload(cand.topology)
        except RetriableError as exc:  # a database or Kafka not answering: offered again next time
            log.warning("%s: topology %s not taken yet, will retry: %s", self.role, cand.label, exc)
            self._retry = cand
            return False
        except CdxError as exc:
            self.refuse(cand.label, str(exc))
            return False
        self.accept(cand)
        return True

    def wake(self) -> None:
        """Check for a new revision at the next ``poll`` (SIGHUP), the file included."""
        self._next = 0.0
        self._stat = None

    def _retry_due(self) -> Candidate | None:
        if not self._due(max(self.interval, 5.0)):
            return None
        cand, self._retry = self._retry, None
        return cand

    def accept(self, cand: Candidate) -> None:
        previous = self.label
        self.current, self.label, self.sha256 = cand.topology, cand.label, cand.sha256
        self._refused = None
        log.info("%s: now running topology %s (was %s)", self.role, cand.label, previous)
        self._report_all()

    def refuse(self, label: str, why: str) -> None:
        log.error("%s: cannot take topology %s, keeping %s: %s", self.role, label, self.label, why)
        self._refused = (label, why)
        self._report_all()

    def _report_all(self) -> None:
        for name in self.instances:
            self._report(name)

    def close(self) -> None:
        """Tombstone this process's reports (a clean stop) and close the clients."""
        self.watcher.close()
        self.reporter.close()
