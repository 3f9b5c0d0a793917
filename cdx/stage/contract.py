"""What a stage is: a :class:`Source`, a :class:`Target` and the few callables that make a hop.

Every hop of cdx (capture, router, channel sink, channel upload, HQ upload sink, offline sync) moves
records from a source that can be read again from a *position* to a target that can store that
position in the same transaction as the records. :func:`cdx.stage.loop.run_stage` runs such a
pair; this module states what each side promises.

The contract
- **Resumable**: the target is the only record of progress. It stores the source position reached
  *in the same transaction* as the records written (``write(items, position)``). On start the target
  is opened first and the source positions itself at the position the target holds; after a
  failure the source rewinds there. Nothing else (Kafka committed offsets, files) is read back.
- **Idempotent**: a crash between the target's commit and the source learning of it, or a rewind,
  delivers records the target may already hold; a target either recognises them (by a key, a
  counter, a watermark) or applies them idempotently. Records are therefore delivered *at least
  once* to ``write`` and take effect *exactly once* in the target.
- **Ordered**: a source delivers records in its position order (per partition for Kafka); the
  loop keeps that order within and across batches, also when it splits a batch to isolate a bad
  record. A target that reorders (parents first, say) does so inside one transaction.
- **Typed errors** (:mod:`cdx.errors`): ``RetriableError`` (the target or source is unreachable,
  a deadlock) rolls back, rewinds and retries after :class:`cdx.stage.backoff.Backoff`;
  ``SkippableError`` (this record cannot be used) goes to the stage's ``dead_letter`` callable
  and its position still advances; ``FatalError`` (and any unexpected exception) stops the stage
  with its message.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from cdx.errors import SkippableError

R = TypeVar("R")
"""A record as the source delivers it (a Kafka message, a database row)."""
T = TypeVar("T")
"""A record as the target writes it (what ``decode`` makes of a source record)."""
P = TypeVar("P")
"""A source position (offsets by partition, a change-tracking version, a counter)."""
T_contra = TypeVar("T_contra", contravariant=True)
P_contra = TypeVar("P_contra", contravariant=True)


class Source(Protocol[R, P]):
    """Where a stage reads. Positions come from the target; the source never stores them itself."""

    def open(self) -> None:
        """Start reading (called after the target is open: the source may ask it for positions).
        ``RetriableError`` while a dependency does not answer (the loop retries with back-off)."""

    def poll(self, max_records: int, max_wait: float) -> Sequence[R]:
        """Up to ``max_records`` records in position order, waiting at most ``max_wait`` seconds for the
        first one (empty when none came). After ``rewind``, starts again at the last committed position."""
        ...

    def position(self, records: Sequence[R]) -> P:
        """The position just after ``records`` (a prefix, suffix or slice of one poll, in order): what
        the target stores with them."""
        ...

    def committed(self, position: P) -> None:
        """The target committed ``position``: records up to it are never delivered again by ``rewind``
        (a Kafka source may also commit offsets to the broker here, for lag monitoring only)."""

    def rewind(self) -> None:
        """The next ``poll`` delivers again every record after the last committed position."""

    def close(self) -> None:
        """Release everything (idempotent)."""


class Target(Protocol[T_contra, P_contra]):
    """Where a stage writes: one transaction per batch holding the records and the source position."""

    def open(self) -> None:
        """Connect and check what is needed (tables, state); ``RetriableError`` while unreachable."""

    def begin(self) -> None:
        """Start a transaction (reconnecting first when the connection was lost)."""

    def write(self, items: Sequence[T_contra], position: P_contra) -> None:
        """Write ``items`` and store ``position`` in the open transaction. ``items`` may be empty (the
        batch was dead-lettered): the position still moves. ``SkippableError``: a record of the batch
        is refused; the loop rolls back and isolates it."""

    def commit(self) -> None:
        """Commit the transaction; after it returns the batch and its position are durable."""

    def abort(self, error: BaseException | None = None) -> None:
        """Roll back the open transaction, if any (never raises). After a ``RetriableError`` the target
        should expect its connection to be broken and reconnect on the next ``begin``."""

    def close(self) -> None:
        """Release everything (idempotent)."""


def _identity(record: Any) -> Any:
    return record


@dataclass
class StageOptions:
    """Batching and back-off of one stage."""

    max_records: int = 5000
    """Records per batch (per target transaction) at most."""
    max_wait: float = 0.1
    """Longest wait for the first record of a batch (a batch goes as soon as the source has nothing more)."""
    initial_backoff: float = 0.5
    max_backoff: float = 30.0
    progress_every: float = 60.0
    """Seconds between two progress log lines (0: none)."""


@dataclass
class Stage(Generic[R, T, P]):
    """One hop: ``source`` -> ``decode`` -> ``target``, run by :func:`cdx.stage.loop.run_stage`.

    - ``decode(record)``: the target's item for one source record; ``SkippableError`` dead-letters the
      record, ``RetriableError`` retries the batch (e.g. a schema not readable yet). It may run again
      for the same record after a rewind, so it has no effect outside the stage.
    - ``dead_letter(record, error)``: hand one unusable record on (see :mod:`cdx.stage.letters` for the
      one letter format). It is called *before* the transaction that moves the position past the record
      commits, and again after a rewind: a target that holds letters until its commit drops them in
      ``abort``. A crash may repeat a letter, never lose one.
    - ``between_batches()``: called before every poll (take a new topology revision, renew a lease).
    - ``on_failure(records, error)``: a batch failed (retriable or fatal) and was rolled back; record
      it (a ``Failed`` session), best effort.
    """

    name: str
    source: Source[R, P]
    target: Target[T, P]
    dead_letter: Callable[[R, SkippableError], None]
    decode: Callable[[R], T] = _identity
    between_batches: Callable[[], None] | None = None
    on_failure: Callable[[Sequence[R], Exception], None] | None = None
    options: StageOptions = field(default_factory=StageOptions)
