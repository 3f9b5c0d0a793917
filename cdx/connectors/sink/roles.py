"""Which cdx roles are running, as Kafka sees them (nothing is asked of the processes themselves).

- **router**, **channel sinks**, **HQ upload sink**: members of their consumer groups
  (``<prefix>-router``, ``<prefix>-sink-<owner>``, ``<prefix>-hq-upload``), from
  ``AdminClient.describe_consumer_groups``. A sink is a static member: after its process ends it
  stays listed for its session timeout (10 s), after a crash as well.
- **capture**: the age of the newest position in ``<prefix>._capture_positions`` for the topology's
  HQ; capture rewrites positions at least every 30 s even when HQ is idle, so a position older than
  ``CAPTURE_STALE_AFTER`` (90 s) means capture is not running (or cannot reach Kafka).
- **active / standby** (``--ha``): the members of the role's lease group (``cdx.kafka.lease``); the
  one assigned the lease partition is active. Shown for capture and for each channel upload.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from confluent_kafka import KafkaException

from cdx.connectors.sink.kafkaops import read_range, watermarks
from cdx.connectors.sink.spec import sink_group
from cdx.connectors.upload.plan import uploading_channels
from cdx.kafka.admin import partitions_of
from cdx.kafka.lease import describe_leases, lease_group
from cdx.kafka.rewind import GroupInfo, describe_groups
from cdx.topics import positions_topic
from cdx.topology.root import Topology

log = logging.getLogger("cdx.status")

CAPTURE_STALE_AFTER = 90.0
"""Seconds without a new capture position after which capture counts as not running."""


@dataclass
class Role:
    role: str
    """``capture``, ``router``, ``sink``, ``hq-upload-sink``, ``upload`` (a channel's, under ``--ha``)."""
    name: str
    running: bool | None
    """None when Kafka could not tell."""
    detail: str = ""
    members: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def group_role(role: str, name: str, info: GroupInfo | None) -> Role:
    if info is None:
        return Role(role, name, None, "unknown")
    detail = f"{len(info.members)} member{'s' if len(info.members) != 1 else ''} ({info.state})" if info.members \
        else f"no member ({info.state})"
    return Role(role, name, info.active, detail, list(info.members))


def capture_role(config: Mapping[str, Any], topology: Topology, now: float | None = None) -> Role:
    """Capture's liveness from the age of its newest position (see module docstring)."""
    topic = positions_topic(topology.kafka.topic_prefix)
    name = topology.hq.name
    if not partitions_of(config, topic):
        return Role("capture", name, False, "never ran (no positions topic)")
    _, ends = watermarks(config, topic)
    newest = 0
    prefix = f"{name}/".encode()
    for msg in read_range(config, topic, ends):
        if not (msg.key() or b"").startswith(prefix):
            continue
        ts_type, ts = msg.timestamp()
        stamp = ts if ts_type and ts > 0 else 0
        try:
            stamp = max(stamp, int(json.loads(msg.value() or b"{}").get("ts_ms", 0)))
        except (ValueError, AttributeError):
            pass
        newest = max(newest, stamp)
    if not newest:
        return Role("capture", name, False, "no position yet")
    age = (time.time() if now is None else now) - newest / 1000
    running = age <= CAPTURE_STALE_AFTER
    return Role("capture", name, running, f"last position {age:.0f}s ago" + ("" if running else " (stale)"))


def lease_roles(config: Mapping[str, Any], topology: Topology, capture: Role) -> list[Role]:
    """Active/standby of the roles run with ``--ha``: capture's detail gains its lease (which host is
    active, which wait); every channel whose upload runs under a lease gets an ``upload`` row. Roles
    never run with ``--ha`` have no lease member and are left as they are."""
    prefix, hq = topology.kafka.topic_prefix, topology.hq.name
    uploads = [c.id for c in uploading_channels(topology)]
    groups = {lease_group(prefix, "capture", hq): None, **{lease_group(prefix, "upload", c): c for c in uploads}}
    try:
        states = describe_leases(config, list(groups))
    except (KafkaException, TimeoutError) as exc:
        log.warning("lease groups: %s", exc)
        return []
    out = []
    for group, channel in groups.items():
        state = states.get(group)
        if state is None or (state.active is None and not state.standby):
            continue
        members = [*([state.active] if state.active else []), *state.standby]
        if channel is None:
            capture.detail = f"{capture.detail}; {state.describe()}"
            capture.members = members
        else:
            out.append(Role("upload", channel, state.active is not None, state.describe(), members))
    return out


def roles(config: Mapping[str, Any], topology: Topology) -> list[Role]:
    """Capture, router, every channel and register sink, HQ upload sink, channel uploads under a lease."""
    prefix = topology.kafka.topic_prefix
    router, hq_upload = f"{prefix}-router", f"{prefix}-hq-upload"
    owners = [d.owner_id for d in topology.databases()]
    infos = describe_groups(config, [router, hq_upload, *(sink_group(prefix, o) for o in owners)])
    capture = capture_role(config, topology)
    out = [capture, group_role("router", router, infos.get(router))]
    out += [group_role("sink", o, infos.get(sink_group(prefix, o))) for o in owners]
    out.append(group_role("hq-upload-sink", hq_upload, infos.get(hq_upload)))
    out += lease_roles(config, topology, capture)
    return out
