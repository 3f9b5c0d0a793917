"""The long-running processes a topology needs, as command lines (one job each).

capture (one per HQ), router, HQ upload sink, and per channel data group one sink process (its
channels and offline registers) and one upload process (its uploading channels). Deployments,
systemd units and other manifests are rendered from this list.
"""

from __future__ import annotations

from dataclasses import dataclass

from cdx.deploy.catalog import uploading_channel_ids
from cdx.topology.root import Topology

TOPOLOGY_PATH = "/etc/cdx/topology.yaml"
METRICS_PORT = 9400


@dataclass(frozen=True)
class Workload:
    """One process: ``name`` (DNS-1123 label), its ``cdx`` arguments and what it does."""

    name: str
    args: tuple[str, ...]
    description: str
    principal: str | None = None
    """``CDX_KAFKA_PRINCIPAL`` of the process when ``kafka.principals`` gives its role an identity."""
    standby: bool = False
    """Runs with ``--ha``: two replicas, one active and one standby (capture and uploads)."""

    def command(self, metrics_port: int = METRICS_PORT, topology_path: str = TOPOLOGY_PATH) -> list[str]:
        return ["cdx", *self.args, "-t", topology_path, "--metrics-port", str(metrics_port)]


def dns_label(text: str) -> str:
    """``text`` as a Kubernetes name: lower case, ``[a-z0-9-]``, at most 63 characters."""
    out = "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")
    return out[:63].rstrip("-") or "x"


def workloads(topology: Topology, *, ha: bool = False) -> list[Workload]:
    """Every process of the topology, in start order (capture, router, sinks, uploads, HQ upload sink).
    ``ha``: capture and the uploads run with ``--ha`` (an active and a standby, docs/deployment.md)."""
    flag = ("--ha",) if ha else ()
    p = topology.kafka.principals
    capture = "capture" if p is not None and p.capture is not None else None
    router = "router" if p is not None and p.router is not None else None
    out = [Workload("cdx-capture", ("capture", *flag), "HQ change capture (single writer)", capture, ha),
           Workload("cdx-router", ("route", "--datadir", "/var/lib/cdx/router"), "router: table topics to groups",
                    router)]
    uploading = set(uploading_channel_ids(topology))
    for group in topology.channel_data_groups:
        owners = [d.owner_id for d in topology.databases() if d.group.id == group.id]
        if owners:
            args = ["sink"] + [a for o in owners for a in ("-c", o)]
            out.append(Workload(dns_label(f"cdx-sink-{group.id}"), tuple(args),
                                f"channel sinks of group {group.id}: {', '.join(owners)}"))
        uploads = [c.id for c in group.channels if c.id in uploading]
        if uploads:
            args = ["channel", "upload", *flag] + [a for c in uploads for a in ("-c", c)]
            out.append(Workload(dns_label(f"cdx-upload-{group.id}"), tuple(args),
                                f"channel uploads of group {group.id}: {', '.join(uploads)}", standby=ha))
    if uploading:
        upload_sink = "upload_sink" if p is not None and p.upload_sink is not None else None
        out.append(Workload("cdx-hq-upload-sink", ("hq", "upload-sink"), "HQ upload sink", upload_sink))
    return out
