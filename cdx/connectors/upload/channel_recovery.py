"""In-process recovery of one channel's upload from a lost producer (issue #16).

A broker failover can fence a channel's upload producer although no other uploader runs: the
transaction coordinator of ``<prefix>-upload-<channel>`` moves and bumps the producer epoch
(:class:`cdx.kafka.transactions.ProducerLost`). The channel then recovers in process, as the router
does (:mod:`cdx.streams.recovery`):

1. the lost transaction's in-memory state is dropped: the tables' positions are re-read from what is
   committed (``<prefix>._upload_positions``, read_committed; see :mod:`cdx.connectors.upload.positions`),
   the schemas it published are forgotten;
2. the producer is reopened (:meth:`TransactionalProducer.reopen`: a new instance with the same
   ``transactional.id`` whose ``init_transactions`` aborts what the lost one left open).

Who may recover (:meth:`ProducerRecovery.lost`, then :meth:`ProducerRecovery.confirm` before any reopen):

- with ``--ha`` only the holder of the channel's lease (:mod:`cdx.kafka.lease`), confirmed with the group
  coordinator: a process that lost its lease (paused past its session; a standby took over and fenced
  it) stops with ``LeaseLost`` as before, and never fences the new holder back;
- without ``--ha`` any uploader: a twin process uploading the same channel (a misconfiguration) fences
  it again and again, which the budget turns into a stop.

Budget: :class:`cdx.stage.budget.FailureBudget` (10 lost producers within 600 s, then ``FatalError``:
the process exits and its supervisor restarts it). Attempts are spaced by the stage loop's
:class:`cdx.stage.backoff.Backoff`, one log line each (the loop's, with the cause and the count).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from cdx.kafka.lease import Lease, LeaseLost
from cdx.stage.budget import FailureBudget

log = logging.getLogger("cdx.upload")

__all__ = ["ProducerRecovery"]


class ProducerRecovery:
    """Decides whether one channel's upload may replace its lost producer (see the module docstring)."""

    def __init__(self, channel_id: str, config: Mapping[str, Any], lease: Lease | None = None) -> None:
        self.channel_id = channel_id
        self.config = dict(config)
        self.lease = lease
        self.budget = FailureBudget(f"channel {channel_id} upload: lost producers")
        self.pending: BaseException | None = None
        """The cause of a loss not recovered yet (the next set-up must ``confirm`` first)."""
        self.recoveries = 0

    def lost(self, cause: BaseException) -> int:
        """Count a lost producer: how many within the budget's window (``FatalError`` past the budget)."""
        failures = self.budget.spend(cause)
        self.pending = cause
        return failures

    def confirm(self) -> None:
        """Before any reopen (its ``init_transactions`` fences whoever holds the transactional id): ``LeaseLost``
        when another process holds the channel's lease (this one must stop), ``RetriableError`` while the
        coordinator cannot tell; returns at once without ``--ha``."""
        if self.lease is None:
            return
        if not self.lease.confirmed():
            raise LeaseLost(f"channel {self.channel_id}: upload producer fenced and the lease is held by another"
                            " process now (took over); this one stops") from self.pending

    def recovered(self) -> bool:
        """The producer is reopened and the positions re-read; True when that ended a loss (logged)."""
        if self.pending is None:
            return False
        self.pending = None
        self.recoveries += 1
        log.warning("channel %s: upload recovered from a lost producer (%d recoveries so far); uploading from"
                    " the committed positions", self.channel_id, self.recoveries)
        return True
