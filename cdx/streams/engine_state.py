"""What the activation (``cdx.streams.activation``), the re-route (``cdx.streams.reroute``), the recovery
(``cdx.streams.recovery``) and the source (``cdx.streams.tables``) use of the transactional
engine (``cdx.streams.engine.Engine``), stated as protocols.

They read and change the engine's state through these, never through the ``Engine`` class, so the engine
imports them and they import nothing of the engine: the import graph has no circle. ``Engine`` satisfies
``EngineState`` structurally (mypy checks it where the engine hands itself to them).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, Protocol

from confluent_kafka import Consumer, Producer, TopicPartition

from cdx.streams.batch import RecordRouter
from cdx.streams.keystate import KeyState
from cdx.streams.progress import Progress
from cdx.streams.routing import RoutingPlan
from cdx.topology import Topology
from cdx.topology.live import LiveTopology

TP = tuple[str, int]


class EngineTransaction(Protocol):
    """The engine's one-at-a-time producer transaction (``cdx.streams.engine.Transaction``)."""

    open: bool

    def run(self, offsets: list[TopicPartition] | None, consumer: Consumer) -> AbstractContextManager[None]:
        """``with txn.run(offsets, consumer):`` a transaction around the block, committed with ``offsets``
        sent with the consumer's group metadata (aborted and raised typed, as ``abort``, on a failure)."""

    def abort(self, cause: BaseException | None = None) -> None:
        """Abort, then raise: ``RetriableError`` (aborted, or the producer lost) or the fatal cause."""


class EngineState(Protocol):
    """The engine's state as the activation and the re-route see it: the first four are replaced by a
    reload (``topology``, ``plan``) or set to stop the loop (``restart``, ``reload_requested``); the rest
    are the engine's clients and bookkeeping (``txn`` read-only: the engine's is a ``Transaction``)."""

    topology: Topology
    plan: RoutingPlan
    restart: str | None
    reload_requested: bool
    config: dict[str, Any]
    consumer: Consumer
    producer: Producer
    keys: KeyState
    progress: Progress
    router: RecordRouter
    live: LiveTopology | None
    assigned: set[TP]
    """Source partitions assigned to this worker."""
    active: set[TP]
    """Source partitions activated since their assignment (or the last reload)."""
    processed: dict[TP, int]
    """Per source partition, the offset after the last record this worker routed."""

    @property
    def txn(self) -> EngineTransaction: ...

    def write_progress(self, ends: dict[TP, int], groups: dict[TP, list[str]] | None = None) -> None:
        """Progress records for ``ends`` (every group of the topic, or ``groups[tp]``) into the transaction."""
