"""Acknowledged dead letters: ``<prefix>._dlq_acks`` (compacted).

Some letters are not replayed but must be seen by an operator (:func:`wants_attention`): a gap the
channel upload gave up (component ``upload``, error kind ``gap``) or a change capture could not
publish (component ``capture``). ``cdx status``
reports them as errors until they are acknowledged with ``cdx dlq ack``.

Record: key ``<dlq partition>:<dlq offset>`` of the letter; value JSON ``{"at": ISO time, "note":
text, "kind", "channel", "table"}``; a tombstone withdraws the acknowledgement. Idempotent.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import Producer

from cdx.kafka.admin import COMPACTED, TopicSpec, ensure_topics, partitions_of
from cdx.kafka.config import producer_config
from cdx.kafka.control import deliver
from cdx.kafka.reading import latest_values
from cdx.topics import check_topic


def wants_attention(letter: Any) -> bool:
    """Whether ``cdx status`` reports ``letter`` (a ``DeadLetter``) as an error until it is acknowledged."""
    return bool(letter.component == "capture" or letter.error_kind == "gap")


def dlq_acks_topic(prefix: str) -> str:
    """``<prefix>._dlq_acks``."""
    return check_topic(f"{prefix}._dlq_acks")


def load_acks(config: Mapping[str, Any], prefix: str) -> dict[tuple[int, int], dict[str, Any]]:
    """(partition, offset) of every acknowledged letter -> its acknowledgement."""
    topic = dlq_acks_topic(prefix)
    if not partitions_of(config, topic):
        return {}
    out: dict[tuple[int, int], dict[str, Any]] = {}
    for key, value in latest_values(config, topic).items():
        p, _, o = key.partition(":")
        out[(int(p), int(o))] = json.loads(value)
    return out


def acknowledge(config: Mapping[str, Any], prefix: str, replication_factor: int, letters: Iterable[Any],
                note: str) -> int:
    """Acknowledge ``letters`` (``cdx.connectors.sink.letters.DeadLetter``); returns how many."""
    topic = dlq_acks_topic(prefix)
    ensure_topics(config, [TopicSpec(topic, 1, replication_factor, COMPACTED)])
    at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    records = [(f"{x.dlq_partition}:{x.dlq_offset}".encode(),
                json.dumps({"at": at, "note": note, "kind": x.component, "channel": x.channel,
                            "table": x.table}).encode()) for x in letters]
    deliver(Producer(producer_config(config)), topic, records, 30.0, "dead-letter acknowledgements")
    return len(records)


def needs_attention(letters: Iterable[Any], acks: Mapping[tuple[int, int], Any]) -> list[Any]:
    """Letters that :func:`wants_attention` not acknowledged yet, oldest first."""
    return [x for x in letters if wants_attention(x) and (x.dlq_partition, x.dlq_offset) not in acks]
