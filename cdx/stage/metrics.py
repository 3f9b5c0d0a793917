"""The metrics every stage exports, with the same names: a dashboard shows any hop the same way.

All carry the label ``stage`` (the stage's name: ``hq-upload-sink``, ...). Registered once here;
stages keep their own, older metrics besides (e.g. ``cdx_upload_sink_rows_total``).

- ``cdx_stage_records_total{stage, outcome}``: source records handled in committed batches;
  ``outcome`` is ``written`` (handed to the target) or ``dead_lettered``.
- ``cdx_stage_batches_total{stage}``: target transactions committed.
- ``cdx_stage_errors_total{stage, kind}``: failures by ``kind``: ``retriable`` (rolled back and
  retried), ``skippable`` (a record dead-lettered), ``fatal`` (the stage stopped).
- ``cdx_stage_batch_seconds{stage}``: time from the poll's return to the commit of a batch.
- ``cdx_stage_up{stage}``: 1 while the stage's loop runs, 0 once it stopped.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECORDS = Counter("cdx_stage_records_total", "Source records handled in committed batches", ["stage", "outcome"])
BATCHES = Counter("cdx_stage_batches_total", "Target transactions committed", ["stage"])
ERRORS = Counter("cdx_stage_errors_total", "Stage failures by kind (retriable, skippable, fatal)", ["stage", "kind"])
BATCH_SECONDS = Histogram("cdx_stage_batch_seconds", "Seconds from a poll's return to its batch's commit", ["stage"],
                          buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
UP = Gauge("cdx_stage_up", "1 while the stage's loop runs", ["stage"])

RETRIABLE, SKIPPABLE, FATAL = "retriable", "skippable", "fatal"
WRITTEN, DEAD_LETTERED = "written", "dead_lettered"
