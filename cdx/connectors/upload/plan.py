"""What a channel uploads and where its positions are: upload subjobs per channel, the positions
topic and its keys, and the upload options (kept apart from the uploader so the HQ sink and
``cdx status`` need not import it)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cdx.connectors.upload.positions import UploadPosition
from cdx.errors import ConfigError
from cdx.kafka.reading import latest_values
from cdx.topics import check_topic
from cdx.topology import Direction, Subjob, Topology
from cdx.topology.model import Channel
from cdx.topology.operations import offline_excluded

DEFAULT_GAP_TIMEOUT = 600.0
DEFAULT_GAP_GRACE = 5.0


def upload_positions_topic(prefix: str) -> str:
    """``<prefix>._upload_positions`` (compacted)."""
    return check_topic(f"{prefix}._upload_positions")


def position_key(channel_id: str, table: str) -> str:
    return f"{channel_id}/{table}"


def load_upload_positions(config: Mapping[str, Any], topic: str) -> dict[str, UploadPosition]:
    """Every committed upload position, by key ``<channel>/<table>`` (read_committed, to the end)."""
    return {key: UploadPosition.decode(value) for key, value in latest_values(config, topic).items()}


def upload_subjobs_for(topology: Topology, channel_id: str) -> list[Subjob]:
    """The upload subjobs a channel (or, through its channel, an offline register) uploads."""
    group = topology.group_of_channel(channel_id)
    if group is None:
        return []
    return topology.subjobs_for_group(group.id, Direction.UPLOAD)


def offline_subjobs_for(topology: Topology, channel_id: str) -> list[Subjob]:
    """The upload subjobs the channel's offline registers sync into it: those without ``offline: false``."""
    return [s for s in upload_subjobs_for(topology, channel_id) if not offline_excluded(topology, s)]


def uploading_channels(topology: Topology, only: list[str] | None = None) -> list[Channel]:
    """Channels with at least one upload subjob (all, or those named in ``only``)."""
    channels = [c.channel for c in topology.channels() if upload_subjobs_for(topology, c.channel.id)]
    if not only:
        return channels
    by_id = {c.id.casefold(): c for c in channels}
    out = []
    for wanted in only:
        found = by_id.get(wanted.casefold())
        if found is None:
            known = topology.channel(wanted)
            why = "uploads nothing (no upload schedule reaches its group)" if known else "is not in the topology"
            raise ConfigError(f"channel {wanted!r} {why}; the uploading channels are "
                              + (", ".join(c.id for c in channels) or "none") + ": fix --channel")
        out.append(found)
    return out


@dataclass
class UploadOptions:
    poll_interval: float = 0.2
    batch_size: int = 5000
    gap_grace: float = DEFAULT_GAP_GRACE
    gap_timeout: float = DEFAULT_GAP_TIMEOUT
    max_backoff: float = 30.0
    from_counter: int | None = None
    """Restart the tables (``from_tables``, default all) of the channel(s) at this counter, once, on start."""
    from_tables: list[str] | None = None
    ha: bool = False
    """Each channel runs under its lease (``cdx.kafka.lease``): active where it holds it, standby elsewhere."""
    lease_timeout: float = 10.0
    """Seconds without a heartbeat before a dead active's channel moves to a standby (``--ha``)."""


def restart_tables(topology: Topology, channel_id: str, names: list[str] | None) -> list[Subjob]:
    """The upload subjobs of ``channel_id`` that ``--table`` ``names`` choose (all when none): a name is the
    channel table (``schema.name`` or ``name``) or the subjob id, any case. ``ConfigError`` naming the
    channel's upload tables when one name matches none; checked against the topology alone (before any
    database or Kafka is reached) and again when the restart runs."""
    from cdx.connectors.upload.source import source_table

    subjobs = upload_subjobs_for(topology, channel_id)
    if not names:
        return subjobs

    def names_of(s: Subjob) -> set[str]:
        table = source_table(s)
        return {str(table).casefold(), table.name.casefold(), s.id.casefold()}

    unknown = [n for n in names if not any(n.strip().casefold() in names_of(s) for s in subjobs)]
    if unknown:
        raise ConfigError(f"channel {channel_id}: --table {', '.join(repr(n) for n in unknown)} "
                          + ("is no upload table" if len(unknown) == 1 else "are no upload tables")
                          + " of the channel; it uploads " + (", ".join(f"{source_table(s)} (subjob {s.id})"
                                                                      for s in subjobs) or "nothing"))
    wanted = {n.strip().casefold() for n in names}
    return [s for s in subjobs if names_of(s) & wanted]
