"""Prometheus metrics of the upload side: channel upload, HQ upload sink, offline-register sync.

Transactions, retries and errors are the stages' (``cdx_stage_*{stage="channel-upload/<channel>"}``,
``{stage="hq-upload-sink"}``, ``{stage="offline-sync/<register>"}``: :mod:`cdx.stage.metrics`); these are
the upload's own."""

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
DEAD_LETTERS = Counter("cdx_upload_dead_letters_total", "Rows sent to the dead-letter topic", ["component"])

SINK_ROWS = Counter("cdx_upload_sink_rows_total", "Upload rows applied at HQ by outcome",
                    ["channel", "table", "result"])

OFFLINE_ROWS = Counter("cdx_offline_sync_rows_total", "Offline-register rows merged into channel databases",
                       ["register", "result"])
