"""Prometheus metrics of the router (served with ``cdx route --metrics-port``)."""

from prometheus_client import Counter

RECORDS_IN = Counter("cdx_router_records_in_total", "Source records processed by the live stream")
RECORDS_OUT = Counter("cdx_router_records_out_total", "Records sent to group topics by the live stream")
BACKFILLED = Counter("cdx_router_backfilled_total", "Records sent to group topics by bootstraps")
DEAD_LETTERS = Counter("cdx_router_dead_letters_total", "Source records sent to the dead-letter topic")
RELOADS = Counter("cdx_router_reloads_total", "Topology reloads applied")
