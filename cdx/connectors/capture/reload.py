"""A running ``CaptureConnector`` takes a new topology revision (``cdx.topology.live``) between two polls.

- A new download table (a new subjob): its topic is created; from the next poll on it is captured from
  its last committed position or, having none, snapshotted first (as at start). Its HQ table must be
  tracked already (``cdx topology apply`` enables tracking before it publishes).
- A table no longer in any download subjob: no longer polled; its topic and positions stay.
- Refused (``ConfigError``, nothing changed): a new table not tracked (run ``cdx hq enable-tracking``
  or ``cdx topology apply``), another HQ database or Kafka cluster (restart capture for those).
"""

from __future__ import annotations

import logging

from cdx.connectors.capture.source import TrackingSource
from cdx.connectors.capture.tables import capture_tables, table_specs
from cdx.errors import ConfigError
from cdx.kafka.admin import ensure_topics
from cdx.topology import Topology

log = logging.getLogger("cdx.capture")


def reload_capture(c: TrackingSource, old: Topology, topology: Topology) -> None:
    """See the module docstring (``c``: the running capture's source, whose tables are replaced; it
    re-reads schemas and committed positions before its next poll, as after a ``rewind``)."""
    if (old.hq.dsn, old.hq.name, old.kafka.bootstrap_servers, old.kafka.topic_prefix) != (
            topology.hq.dsn, topology.hq.name, topology.kafka.bootstrap_servers, topology.kafka.topic_prefix):
        raise ConfigError("this revision changes the HQ database or the Kafka cluster/prefix: restart capture")
    assert c.tracker is not None
    tracker = c.tracker
    running = {t.topic: t for t in c.tables}
    wanted = capture_tables(topology)
    new = [t for t in wanted if t.topic not in running]
    for t in new:
        try:
            c.db(lambda t=t: tracker.min_valid_version(t.ref))  # type: ignore[misc]
        except ConfigError as exc:
            raise ConfigError(f"HQ table {t.name} is not tracked ({exc}): run `cdx hq enable-tracking`"
                              " (or `cdx topology apply`)") from exc
    for t in new:
        c.refresh_schema(t)  # refused here (no primary key...) rather than at the next poll
    if new:
        ensure_topics(c.base_config, table_specs(topology, new))
    c.tables = [running.get(t.topic, t) for t in wanted]
    c.rewind()
    gone = sorted(set(running) - {t.topic for t in wanted})
    if new or gone:
        log.info("capture: tables added %s, no longer captured %s", [t.name for t in new], gone)
