"""What the channel upload does with rows and counters it cannot simply publish.

- **A record larger than** ``kafka.max_message_bytes`` (the producer's ``message.max.bytes`` and the
  upload topics' ``max.message.bytes``, set together): not published; a dead letter (component
  ``upload``, error kind ``oversize``: channel, table, counter, reason) takes its place in the same
  transaction, and the channel moves on.
- **A gap given up after** ``--gap-timeout`` (no proof its counters can no longer commit): a dead
  letter (component ``upload``, error kind ``gap``: channel, table, counter range) in the same
  transaction as the position that skips it. ``cdx status`` shows it as an error until it is
  acknowledged (``cdx dlq ack``, :mod:`cdx.connectors.upload.acks`).
- **Counters that went backwards** (the highest counter the database has handed out is below the
  highest one published: a restored backup, SQLite's ``MAX+1`` after the top rows were deleted):
  new rows would reuse published counters and be lost, so the table is halted (the position says
  why) until ``cdx channel upload --from-counter N``.

Every letter uses :func:`cdx.connectors.upload.records.dlq_record` (the one format, :mod:`cdx.stage.letters`);
the size check is :func:`cdx.kafka.config.oversize_reason`, as capture's.
"""

from __future__ import annotations

from cdx.connectors.upload.positions import Gap
from cdx.connectors.upload.records import dlq_record

GAP_KIND = "upload-gap"
"""The metric label of gap letters."""

Letter = tuple[bytes, bytes, list[tuple[str, bytes]]]


def gap_letter(channel: str, table: str, topic: str, gap: Gap, now_ms: int, timeout_s: float) -> Letter:
    """The dead letter of a gap given up after the timeout."""
    waited = (now_ms - gap.first_seen_ms) / 1000
    reason = (f"counters {gap.start}..{gap.end} ({gap.size}) never appeared within --gap-timeout {timeout_s:g}s"
              f" (waited {waited:.0f}s) and were skipped; if those rows exist, re-send them with"
              f" cdx channel upload --channel {channel} --from-counter {gap.start}; then cdx dlq ack")
    return dlq_record("upload", reason, error_kind="gap", channel=channel, table=table, counter=gap.start,
                      topic=topic,
                      row={"first_counter": gap.start, "last_counter": gap.end, "counters": gap.size})


def backwards_reason(table: str, high: int, floor: int | None) -> str | None:
    """Why a table must halt: the database's highest counter ``floor`` is below ``high`` (None: fine)."""
    top = floor or 0
    if high <= 0 or top >= high:
        return None
    return (f"counters of {table} went backwards: the database has handed out up to {top}, but {high} was"
            f" already published (restored backup, or deleted top rows whose counters get reused); new rows"
            f" would reuse published counters. Upload of this table is halted: see docs/upload.md"
            f" 'Counters that go backwards', then restart it with --from-counter N")
