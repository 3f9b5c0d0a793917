"""Bootstrap and catch-up: how far the sinks of a host are from given end offsets.

A new channel (or offline register) has no stored offsets: its sink starts at the beginning of its
compacted group topic and so receives the full current state (every live key's last change;
deletes of keys it never had are harmless). ``CatchUp`` measures that against the group topic's
end offsets observed when it was created: per sink, records applied (offsets behind it, counted
from the earliest offset) out of the topic's records, and whether it has reached the ends.
``cdx channel bootstrap`` runs sinks until ``CatchUp.done()``; ``cdx sink`` shows it as a progress
bar on a terminal.

How a bootstrap is fast (``bootstrap_settings``, ``bulk_gc``): batches of ``BOOTSTRAP_BATCH`` records
(one transaction each, rows + offsets + watermarks: exactly once and resumable as any sink batch),
so each table's rows reach ``apply.BULK_ROWS`` and go through the dialect's bulk load
(``Dialect.load_rows``: PostgreSQL ``COPY`` into the table, the upsert only once a key exists; SQLite
one ``INSERT ... SELECT`` over the batch as JSON, which runs without Python's GIL); larger Kafka
fetches, kept while the sink's inbox is full (``feed.Feed``: the partitions stay assigned, librdkafka's
prefetched records are not dropped and fetched again); and a garbage collector that runs rarely (the
decoded records are acyclic and die with their batch). Decoding stays on the worker: one compiled reader
per routed writer schema builds each record's change, key tuple and row tuple in one pass
(``fastrecords``); decoding on the feed's thread was removed, see docs/performance.md ("Decode ahead
removed").
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from cdx.connectors.sink.host import SinkHost
from cdx.connectors.sink.kafkaops import watermarks
from cdx.connectors.sink.runner import SinkSettings

BOOTSTRAP_BATCH = 20_000
"""Records per transaction of ``cdx channel bootstrap`` (a sink's default: 5,000)."""
BOOTSTRAP_FETCH = {"queued.max.messages.kbytes": 32 * 1024, "fetch.max.bytes": 16 << 20,
                   "max.partition.fetch.bytes": 4 << 20}
"""librdkafka fetch sizes of a bootstrapping sink's consumer (a sink host's: at most 16 MiB queued, 1 MiB
per partition and fetch)."""
POLL_TIMEOUT = 0.05
"""Seconds the feed waits for records, or before it looks again once the sink's inbox was full (a
sink's: 0.5, which leaves a bootstrap's writer without records)."""
GC_THRESHOLD = 200_000
"""Allocations between two young-generation collections while bootstrapping (CPython's default: 700):
a batch's records are freed by reference counting before a collection would look at them."""


def bootstrap_settings(batch_size: int = BOOTSTRAP_BATCH) -> SinkSettings:
    """The sink settings of ``cdx channel bootstrap`` (see the module docstring)."""
    return SinkSettings(batch_size=batch_size, poll_timeout=POLL_TIMEOUT,
                        consumer_overrides=dict(BOOTSTRAP_FETCH))


@contextmanager
def bulk_gc() -> Iterator[None]:
    """Run the block with the objects alive at its start frozen out of collection and young
    collections rare; restored afterwards."""
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


@dataclass
class SinkProgress:
    owner_id: str
    applied: int
    """Offsets applied (from the earliest offset, capped at the ends)."""
    total: int
    """Offsets between the earliest and the end offsets."""
    caught_up: bool
    status: str
    error: str | None


class CatchUp:
    def __init__(self, host: SinkHost) -> None:
        self.host = host
        configs = {s.spec.topic: s.kafka_config for s in host.sinks}  # each sink may read only its own topic
        self.bounds = {t: watermarks(config, t) for t, config in configs.items()}
        """topic -> (earliest, end) offsets per partition."""

    def progress(self) -> list[SinkProgress]:
        out = []
        for sink in self.host.sinks:
            lows, ends = self.bounds[sink.spec.topic]
            applied = total = 0
            for p, end in ends.items():
                low = lows.get(p, 0)
                at = max(sink.state.offsets.get(p, low), sink.positions.get(p, low), low)
                total += max(end - low, 0)
                applied += max(min(at, end) - low, 0)
            out.append(SinkProgress(sink.name, applied, total, sink.caught_up(ends), sink.status, sink.last_error))
        return out

    def done(self) -> bool:
        """True when every sink reached its ends, or stopped."""
        return all(p.caught_up or p.status in ("failed", "stopped") for p in self.progress())
