"""Where a probe's propagation latency goes, from the records' Kafka timestamps (used by ``bench.e2e``).

A probe row travels HQ commit -> table topic (the capture's ``produce``: CreateTime) -> group topic (the
router's ``produce``) -> visible in the channel (the sink's commit, as the poller saw it). So, per probe:

- **capture**: HQ commit until the capture produced it (the wait for the next poll, the tracking read,
  encoding);
- **router**: until the router produced it (the capture's transaction commit, the router's fetch, routing);
- **sink**: until it was visible in the channel (the router's transaction commit, the sink's fetch, apply,
  commit).

Wall clock: the broker keeps the producer's CreateTime (ms); the benchmark's ``perf_counter`` times are
converted with one offset taken at the start of the phase.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.common import percentiles
from cdx.codec import SchemaStore, SingleObjectCodec
from cdx.kafka.config import client_config
from cdx.kafka.reading import read_to_end
from cdx.topics import schemas_topic
from cdx.topology.loader import load_topology

STAGES = ("capture", "router", "sink")


def probe_times(codec: SingleObjectCodec, config: Mapping[str, Any], topic: str, first: int,
                count: int) -> dict[int, float]:
    """CreateTime (wall clock, s) of the first record of each probe ``SEQ`` in ``[first, first + count)``."""
    out: dict[int, float] = {}
    for msg in read_to_end(config, topic):
        key = msg.key()
        if key is None or msg.value() is None:
            continue
        seq = codec.decode_key(topic, key).get("SEQ")
        if isinstance(seq, int) and first <= seq < first + count and seq not in out:
            out[seq] = msg.timestamp()[1] / 1000
    return out


def breakdown(topology: Path, first: int, count: int, committed: Mapping[int, float],
              seen: Mapping[int, float]) -> dict[str, dict[str, float]]:
    """Percentiles (ms) of each stage over the probes found at every step; times in wall-clock seconds."""
    topo = load_topology(topology)
    k = topo.kafka
    config = client_config(k.bootstrap_servers, k.security)
    codec = SingleObjectCodec(SchemaStore(k.bootstrap_servers, schemas_topic(k.topic_prefix),
                                          consumer_config=dict(config)))
    probe = next(s for s in topo.download_subjobs() if s.hq_table.name == "PROBE")
    table = probe_times(codec, config, topo.hq_table_topic(probe), first, count)
    group = probe_times(codec, config, topo.group_topic(topo.channel_data_groups[0].id), first, count)
    both = [s for s in committed if s in table and s in group and s in seen]
    parts = {"capture": [table[s] - committed[s] for s in both], "router": [group[s] - table[s] for s in both],
             "sink": [seen[s] - group[s] for s in both]}
    return {name: {**percentiles([x * 1000 for x in xs]), "max": max(xs, default=0) * 1000, "samples": len(xs)}
            for name, xs in parts.items()}


def line(stages: Mapping[str, Mapping[str, float]]) -> str:
    """``capture p50 40 / p99 90 ms; router ...`` of one run."""
    return "; ".join(f"{name} p50 {s.get('p50', 0):,.0f} / p99 {s.get('p99', 0):,.0f} ms"
                     for name, s in stages.items())
