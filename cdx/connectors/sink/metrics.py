"""Prometheus metrics that only a channel sink has (label ``channel``: the channel or register id).

Batches committed, retries and dead letters are the stage kernel's ``cdx_stage_batches_total``,
``cdx_stage_errors_total`` and ``cdx_stage_records_total`` with ``stage="sink:<channel>"``
(:mod:`cdx.stage.metrics`); they are not counted twice here."""

from prometheus_client import Counter, Gauge

APPLIED = Counter("cdx_sink_applied_total", "Changes applied to a channel database (after re-send skipping)",
                  ["channel"])
DUPLICATES = Counter("cdx_sink_duplicates_total", "Router re-sends skipped (source offset already applied)",
                     ["channel"])
FILTERED = Counter("cdx_sink_filtered_total", "Upserts turned into deletes by the channel's row filter",
                   ["channel"])
DEAD_LETTERED = Counter("cdx_sink_dead_lettered_total", "Records written to the dead-letter topic", ["channel"])
CONSUMER_RESTARTS = Counter("cdx_sink_consumer_restarts_total",
                            "Kafka consumers replaced after a fatal consumer error (e.g. a fenced static member)",
                            ["channel"])
RESYNCS = Counter("cdx_sink_resyncs_total", "Full resyncs from the beginning of the group topic (missed deletes)",
                  ["channel"])
UP = Gauge("cdx_sink_database_up", "1 while the channel database accepts writes, 0 while the sink waits for it",
           ["channel"])
