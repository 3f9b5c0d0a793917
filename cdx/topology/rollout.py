"""How far a topology revision has rolled out: the revision published on ``<prefix>._topology`` and
the revision each running role reports on ``<prefix>._topology_roles`` (what ``cdx status`` shows).

A rollout is **complete** when every live role instance (a report younger than
``cdx.kafka.control.STALE_AFTER_SECONDS``) runs the published revision. Reports of roles that
stopped without their tombstone (killed) are stale: listed, but not counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cdx.kafka.control import Revision, RoleReport, latest_revision, read_role_reports
from cdx.topics import topology_roles_topic, topology_topic
from cdx.topology.live import topology_name
from cdx.topology.root import Topology


@dataclass
class Rollout:
    """The published revision (None: none yet, the roles follow their files) and every role's report."""

    published: Revision | None
    reports: list[RoleReport] = field(default_factory=list)

    def live(self) -> list[RoleReport]:
        return [r for r in self.reports if not r.stale()]

    def behind(self) -> list[RoleReport]:
        """Live instances not running the published revision (refused it, or not there yet)."""
        if self.published is None:
            return []
        return [r for r in self.live() if r.sha256 != self.published.sha256]

    @property
    def complete(self) -> bool:
        return self.published is not None and not self.behind()

    def summary(self) -> str:
        if self.published is None:
            return "no revision published (roles follow their topology files; `cdx topology apply` publishes one)"
        n, behind = len(self.live()), self.behind()
        if not behind:
            return f"{self.published.label} published; rolled out: all {n} running role instance(s) run it"
        refused = sum(r.state == "refused" for r in behind)
        return (f"{self.published.label} published; {n - len(behind)} of {n} running role instance(s) run it"
                + (f", {refused} refused it" if refused else ""))

    def to_json(self) -> dict[str, Any]:
        pub = None if self.published is None else {
            "revision": self.published.label, "sha256": self.published.sha256, "source": self.published.source,
            "published_at": self.published.published_at}
        return {"published": pub, "complete": self.complete, "summary": self.summary(),
                "roles": [{**r.to_json(), "stale": r.stale()} for r in self.reports]}


def rollout(topology: Topology, timeout: float = 15.0) -> Rollout:
    """Read both control topics (``RetriableError``/``KafkaUnreachable`` when Kafka does not answer)."""
    k = topology.kafka
    config = k.client_config()
    name = topology_name(topology)
    published = latest_revision(config, topology_topic(k.topic_prefix), name, timeout)
    return Rollout(published, read_role_reports(config, topology_roles_topic(k.topic_prefix), name, timeout))
