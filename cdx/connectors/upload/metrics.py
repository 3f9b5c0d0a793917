"""Prometheus metrics of the upload side: channel upload, HQ upload sink, offline-register sync."""

from prometheus_client import Counter, Gauge

ROWS = Counter("cdx_upload_rows_total", "Rows published to upload topics", ["channel", "table"])
LATE_ROWS = Counter("cdx_upload_late_rows_total",
                    "Rows published after a higher counter (their transaction committed out of order)",
                    ["channel", "table"])
GAPS_SKIPPED = Counter("cdx_upload_gap_counters_skipped_total",
                       "Counters given up as permanent gaps (rolled back, deleted, or older than the gap timeout)",
                       ["channel", "table"])
OPEN_GAPS = Gauge("cdx_upload_open_gap_counters", "Counters below the highest published one still awaited",
                  ["channel", "table"])
LOW_WATERMARK = Gauge("cdx_upload_low_watermark", "Every counter up to this one is published", ["channel", "table"])
TRANSACTIONS = Counter("cdx_upload_transactions_total", "Kafka transactions committed by the channel upload",
                       ["channel"])
ABORTS = Counter("cdx_upload_aborts_total", "Kafka transactions aborted by the channel upload (then retried)",
                 ["channel"])
CHANNEL_ERRORS = Counter("cdx_upload_channel_errors_total", "Failed polls of a channel database (retried)",
                         ["channel"])
DEAD_LETTERS = Counter("cdx_upload_dead_letters_total", "Rows sent to the dead-letter topic", ["component"])

SINK_ROWS = Counter("cdx_upload_sink_rows_total", "Upload rows applied at HQ by outcome",
                    ["channel", "table", "result"])
SINK_BATCHES = Counter("cdx_upload_sink_batches_total", "HQ transactions committed by the upload sink")
SINK_FAILURES = Counter("cdx_upload_sink_failures_total", "Upload sink batches that failed (then retried)")

OFFLINE_ROWS = Counter("cdx_offline_sync_rows_total", "Offline-register rows merged into channel databases",
                       ["register", "result"])
OFFLINE_ERRORS = Counter("cdx_offline_sync_errors_total", "Failed offline-register syncs (retried)", ["register"])
