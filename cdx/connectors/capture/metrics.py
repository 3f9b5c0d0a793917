"""Prometheus metrics of the capture connector (names documented in docs/operations.md).

Transactions, retries and errors are the stage's (``cdx_stage_*{stage="capture"}``, :mod:`cdx.stage.metrics`);
these are capture's own."""

from prometheus_client import Counter, Gauge

CHANGES = Counter("cdx_capture_changes_total", "Changes published to table topics", ["table", "op"])
RESNAPSHOTS = Counter("cdx_capture_resnapshots_total",
                      "Tables re-snapshotted because their position fell behind the minimum valid version",
                      ["table"])
VERSION = Gauge("cdx_capture_version", "Change-tracking version reached per table", ["table"])
DEAD_LETTERS = Counter("cdx_capture_dead_letters_total",
                       "Changes too large to publish, sent to the dead-letter topic instead", ["table"])
