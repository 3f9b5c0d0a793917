"""``cdx hq upload-sink replay``: apply a channel's upload topic again at HQ, from an offset or a time.

Contract
- The HQ upload sink keeps its offsets in HQ (``cdx_state``, namespace = its consumer group, key
  ``<topic>/<partition>``) and reads them on every assignment (``cdx.connectors.upload.sink``). A replay lowers
  them for the channel's upload topic (never raises them; a partition never applied is left alone), in
  one HQ transaction; the sink applies from there when it next runs.
- It refuses while an HQ upload sink runs (its group has members): a running sink would overwrite them.
- **Idempotent**: the sink is insert-only and recognises a row already at HQ by (origin channel, counter)
  or primary key: re-sent rows are counted as duplicates in the upload sessions, nothing is inserted or
  updated twice. Twice in a row equals once, which equals not replaying.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from cdx.connectors.upload.plan import uploading_channels
from cdx.connectors.upload.sink import sink_group_id
from cdx.errors import ConfigError, FatalError
from cdx.kafka.rewind import group_members, replay_targets
from cdx.topics import upload_topic
from cdx.topology import Topology
from cdx.topology.model import Channel

log = logging.getLogger("cdx.upload.sink")


@dataclass
class UploadReplay:
    topic: str
    ends: dict[int, int]
    moved: dict[int, tuple[int, int]] = field(default_factory=dict)
    """partition -> (offset stored at HQ before, offset now)."""


def upload_channel(topology: Topology, channel: str) -> Channel:
    """The uploading channel ``channel``; ``ConfigError`` naming the known ones."""
    channels = {c.id.casefold(): c for c in uploading_channels(topology)}
    ch = channels.get(channel.casefold())
    if ch is None:
        raise ConfigError(f"no uploading channel {channel!r} in the topology; known: "
                          f"{', '.join(c.id for c in channels.values()) or 'none'}")
    return ch


def replay_upload(topology: Topology, channel: str, *, from_offset: int | None = None,
                  from_timestamp_ms: int | None = None, partitions: Iterable[int] | None = None,
                  wait: float = 0.0) -> UploadReplay:
    """Rewind the HQ upload sink's offsets of ``channel``'s upload topic (see module docstring)."""
    from cdx.dialects import get_dialect

    ch = upload_channel(topology, channel)
    prefix = topology.kafka.topic_prefix
    topic, group = upload_topic(prefix, ch.id), sink_group_id(prefix)
    config = topology.kafka.client_config()
    members = group_members(config, group, wait)
    if members:
        raise FatalError(f"the HQ upload sink is running (consumer group {group}: {', '.join(members)}); stop"
                         " every HQ upload sink first (one with --instance-id stays a member for its session"
                         " timeout, 10 s: pass --wait to wait for it)")
    targets, ends = replay_targets(config, topic, from_offset=from_offset, from_timestamp_ms=from_timestamp_ms,
                                   partitions=partitions)
    result = UploadReplay(topic, ends)
    dialect = get_dialect(topology.hq.dialect.value)
    conn = dialect.connect(topology.hq.dsn)
    try:
        with dialect.transaction(conn):
            dialect.ensure_state_table(conn)
            stored = dialect.read_state(conn, group)
            for p, target in sorted(targets.items()):
                value = stored.get(f"{topic}/{p}")
                if value is not None and target < int(value):
                    result.moved[p] = (int(value), target)
            dialect.write_state(conn, group, {f"{topic}/{p}": str(new) for p, (_, new) in result.moved.items()})
    finally:
        conn.close()
    if result.moved:
        log.info("upload-sink replay: %s rewound %s", topic, result.moved)
    return result
