"""Prometheus metrics of the channel sinks (label ``channel``: the channel or register id)."""

from prometheus_client import Counter, Gauge

APPLIED = Counter("cdx_sink_applied_total", "Changes applied to a channel database (after re-send skipping)",
                  ["channel"])
DUPLICATES = Counter("cdx_sink_duplicates_total", "Router re-sends skipped (source offset already applied)",
                     ["channel"])
FILTERED = Counter("cdx_sink_filtered_total", "Upserts turned into deletes by the channel's row filter",
                   ["channel"])
DEAD_LETTERED = Counter("cdx_sink_dead_lettered_total", "Records written to the dead-letter topic", ["channel"])
BATCHES = Counter("cdx_sink_batches_total", "Database transactions committed", ["channel"])
RETRIES = Counter("cdx_sink_retries_total", "Batches retried after a transient database or broker error",
                  ["channel"])
CONSUMER_RESTARTS = Counter("cdx_sink_consumer_restarts_total",
                            "Kafka consumers replaced after a fatal consumer error (e.g. a fenced static member)",
                            ["channel"])
RESYNCS = Counter("cdx_sink_resyncs_total", "Full resyncs from the beginning of the group topic (missed deletes)",
                  ["channel"])
UP = Gauge("cdx_sink_database_up", "1 while the channel database accepts writes, 0 while the sink waits for it",
           ["channel"])
