"""The router's own Prometheus metrics (served with ``cdx route --metrics-port``).

Besides these, the router exports the ``cdx_stage_*`` metrics of every stage with ``stage="router"``
(:mod:`cdx.stage.metrics`): source records routed (``cdx_stage_records_total{outcome="written"}``),
transactions committed, errors by kind, batch seconds, up.
"""

from prometheus_client import Counter

RECORDS_OUT = Counter("cdx_router_records_out_total", "Records sent to group topics by the live stream")
BACKFILLED = Counter("cdx_router_backfilled_total", "Records sent to group topics by bootstraps")
DEAD_LETTERS = Counter("cdx_router_dead_letters_total", "Source records sent to the dead-letter topic")
RELOADS = Counter("cdx_router_reloads_total", "Topology reloads applied")
