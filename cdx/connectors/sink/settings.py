"""Settings, totals and the dead-letter hook of a channel sink (see ``runner`` and ``host``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from cdx.connectors.sink.records import Record


class DeadLetterSink(Protocol):
    def send(self, owner_id: str, kind: str, group_topic: str, rec: Record, error: str,
             extra: Mapping[str, Any] | None = None) -> None:
        """Deliver durably or raise ``RetriableError``."""


@dataclass
class SinkSettings:
    batch_size: int = 5000
    """Records applied per database transaction (at most)."""
    poll_timeout: float = 0.5
    """Seconds a host's shared consumer waits for records before it looks at its channels again."""
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    commit_to_kafka: bool = True
    """Also commit offsets to the channel's consumer group in Kafka (informational: lag monitoring),
    see ``kafka_commit_interval``."""
    kafka_commit_interval: float = 5.0
    """Seconds between those informational commits (per channel, only when its offsets moved)."""
    session_retention_days: float = 14.0
    """Download sessions older than this are deleted (0: keep by count only)."""
    session_max_rows: int = 50_000
    """Download sessions kept per database at most (0: no limit)."""
    resync_check: bool = True
    """Check for missed deletes whenever the database is opened (see ``resync``)."""
    idle_mark_interval: float = 300.0
    """While idle (nothing to consume), record at most this often that the database is current
    (state key ``caught_up``): the missed-delete check then does not mistake a quiet topic for a
    long outage."""
    idle_tick: float = 2.0
    """Seconds between an idle channel's housekeeping steps (controls, lock lease, idle mark)."""
    stand_by: bool = True
    """A sink that finds the channel lock held stands by until it is free; False (one-shot sinks such as
    ``cdx channel bootstrap``): it stops with the lock's message instead."""
    consumer_overrides: dict[str, Any] = field(default_factory=dict)
    controls: bool = True
    """Obey ``cdx channel pause`` and the distribution schedules (``gate``); one-shot repairs
    (bootstrap, replay) apply everything."""
    systematic_after: int = 10
    """Refusals in a row with the same error (no record applied between) that stop the channel
    instead of dead-lettering on (see ``breaker``; within a batch, probing later records decides sooner)."""
    workers: int = 4
    """Threads of a host that apply batches (each channel's batches one at a time, in order)."""


@dataclass
class Totals:
    applied: int = 0
    duplicates: int = 0
    filtered: int = 0
    dead_lettered: int = 0
    batches: int = 0
    resyncs: int = 0
