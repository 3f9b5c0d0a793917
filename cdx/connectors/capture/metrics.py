"""Prometheus metrics of the capture connector (names documented in docs/operations.md)."""

from prometheus_client import Counter, Gauge

CHANGES = Counter("cdx_capture_changes_total", "Changes published to table topics", ["table", "op"])
TRANSACTIONS = Counter("cdx_capture_transactions_total", "Kafka transactions committed by capture")
ABORTS = Counter("cdx_capture_aborts_total", "Kafka transactions aborted by capture (then retried)")
RESNAPSHOTS = Counter("cdx_capture_resnapshots_total",
                      "Tables re-snapshotted because their position fell behind the minimum valid version",
                      ["table"])
VERSION = Gauge("cdx_capture_version", "Change-tracking version reached per table", ["table"])
DEAD_LETTERS = Counter("cdx_capture_dead_letters_total",
                       "Changes too large to publish, sent to the dead-letter topic instead", ["table"])
