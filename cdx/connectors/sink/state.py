"""A sink's resume state, kept in the channel database itself (table ``cdx_state``).

Layout (``Dialect.ensure_state_table``: ``cdx_state(namespace, key, value)``, schema ``cdx``
where the database has schemas), one namespace per group topic, ``sink:<group topic>``:

====================================================  =============================================
key                                                   value
====================================================  =============================================
``offset:<group partition>``                          next group-topic offset to consume
``wm:<group partition>:<source partition>:<topic>``   ``<source offset> <schema.table>[,...]``: the
                                                      highest source offset applied from that source
                                                      partition through that group partition, and
                                                      the target tables already applied at exactly
                                                      that offset (one HQ change may be routed to a
                                                      table and its extension table)
``rr:<group partition>:<source partition>:<topic>``   ``<gen>/<source offset> <schema.table>[,...]``:
                                                      the same for **re-routed** records (header
                                                      ``cdx.reroute`` = gen, ``cdx.streams.reroute``) of
                                                      the newest re-route (gen) seen
====================================================  =============================================

Both are written with the rows of a batch, in the same database transaction, so the database
always holds rows and position together: that is the only resume record (nothing is read back
from Kafka's committed offsets). Keys or namespaces longer than the state table allows are
shortened with a SHA-256 digest of the topic name.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from cdx.dialects import Connection, Dialect

log = logging.getLogger("cdx.sink")

NAMESPACE_LIMIT = 128
KEY_LIMIT = 256


def fit_name(head: str, topic: str, limit: int) -> str:
    """``head + topic``, or ``head + "#" + sha256(topic)`` when that is longer than ``limit``."""
    text = head + topic
    if len(text) <= limit:
        return text
    return head + "#" + hashlib.sha256(topic.encode()).hexdigest()


@dataclass(frozen=True)
class Watermark:
    """Highest source offset applied, with the targets already applied at exactly that offset;
    ``gen``: for a re-route watermark, the re-route it counts (empty for the live stream's)."""

    offset: int
    targets: frozenset[str] = frozenset()
    gen: str = ""

    def advance(self, offset: int, target: str) -> Watermark:
        if offset > self.offset:
            return Watermark(offset, frozenset((target,)), self.gen)
        if offset == self.offset and target not in self.targets:
            return Watermark(offset, self.targets | {target}, self.gen)
        return self

    def encode(self) -> str:
        head = f"{self.gen}/" if self.gen else ""
        return f"{head}{self.offset} {','.join(sorted(self.targets))}".rstrip()

    @classmethod
    def decode(cls, text: str) -> Watermark:
        offset, _, targets = text.strip().partition(" ")
        gen, _, offset = offset.rpartition("/")
        return cls(int(offset), frozenset(t for t in targets.split(",") if t), gen)


@dataclass
class SinkState:
    """What the database says was consumed and applied (see module docstring)."""

    offsets: dict[int, int] = field(default_factory=dict)
    watermarks: dict[str, Watermark] = field(default_factory=dict)

    def merge(self, offsets: Mapping[int, int], watermarks: Mapping[str, Watermark]) -> None:
        self.offsets.update(offsets)
        self.watermarks.update(watermarks)


def offset_key(partition: int) -> str:
    return f"offset:{partition}"


def watermark_key(partition: int, source_topic: str, source_partition: int) -> str:
    """State key of the watermark of (group partition, source topic, source partition)."""
    return fit_name(f"wm:{partition}:{source_partition}:", source_topic, KEY_LIMIT)


def reroute_key(partition: int, source_topic: str, source_partition: int) -> str:
    """State key of the re-route watermark of (group partition, source topic, source partition)."""
    return fit_name(f"rr:{partition}:{source_partition}:", source_topic, KEY_LIMIT)


class StateStore:
    """Reads and writes one sink's state in the caller's transaction (never commits)."""

    def __init__(self, dialect: Dialect, topic: str) -> None:
        self.dialect = dialect
        self.topic = topic
        self.namespace = fit_name("sink:", topic, NAMESPACE_LIMIT)

    def ensure(self, conn: Connection) -> None:
        """Create the state table if missing."""
        self.dialect.ensure_state_table(conn)

    def load(self, conn: Connection) -> SinkState:
        state = SinkState()
        for key, value in self.dialect.read_state(conn, self.namespace).items():
            try:
                if key.startswith("offset:"):
                    state.offsets[int(key[7:])] = int(value)
                elif key.startswith(("wm:", "rr:")):
                    state.watermarks[key] = Watermark.decode(value)
            except ValueError:
                log.warning("ignoring malformed sink state %s/%s = %r", self.namespace, key, value)
        return state

    def save(self, conn: Connection, offsets: Mapping[int, int], watermarks: Mapping[str, Watermark]) -> None:
        items = {offset_key(p): str(o) for p, o in offsets.items()}
        items.update({k: w.encode() for k, w in watermarks.items()})
        self.dialect.write_state(conn, self.namespace, items)
