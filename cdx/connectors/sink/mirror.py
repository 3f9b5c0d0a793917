"""``OffsetMirror``: the channels' stored offsets, copied to their consumer groups for lag monitoring.

Channels are in no consumer group (see ``host``), but tools that show consumer lag read the
committed offsets of ``<prefix>-sink-<id>``. Every ``interval`` seconds the host commits the offsets
each channel's database holds, for the channels whose offsets moved, with one admin client per Kafka
identity (``AdminClient.alter_consumer_group_offsets``, one request per group, not waited for, and at
most one in flight per group: while a broker is down, requests are not piled up behind one another. The
requests keep librdkafka's default timeout: with a short ``request_timeout`` (15 s) the sink aborted on a
librdkafka assertion, ``rd_kafka_enq_once_del_source_return``, after nearly every broker kill of the
cluster test, against one kill in ten with the default).
Informational only: nothing reads them back; a failure (e.g. a member of an older sink version still in
the group) is logged at debug level and retried with the next move.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from cdx.connectors.sink.runner import ChannelSink

log = logging.getLogger("cdx.sink")


class OffsetMirror:
    def __init__(self) -> None:
        self._admins: dict[str, AdminClient] = {}
        self._sent: dict[str, dict[int, int]] = {}
        self._in_flight: set[str] = set()

    def commit(self, sinks: Iterable[ChannelSink]) -> int:
        """Send the moved offsets; returns how many groups were sent."""
        sent = 0
        for sink in sinks:
            offsets = dict(sink.state.offsets)
            group = sink.spec.consumer_group
            if not offsets or self._sent.get(group) == offsets or group in self._in_flight:
                continue
            self._sent[group] = offsets
            request = ConsumerGroupTopicPartitions(
                group, [TopicPartition(sink.spec.topic, p, o) for p, o in sorted(offsets.items())])
            try:
                futures = self._admin(sink.kafka_config).alter_consumer_group_offsets([request])
            except (KafkaException, ValueError) as e:
                log.debug("sink %s: informational offset commit: %s", sink.name, e)
                continue
            self._in_flight.add(group)
            for future in futures.values():
                future.add_done_callback(self._callback(group))
            sent += 1
        return sent

    def _callback(self, group: str) -> Callable[[Future[Any]], None]:
        def done(future: Future[Any]) -> None:
            self._in_flight.discard(group)
            if future.exception() is not None:
                log.debug("consumer group %s: informational offset commit: %s", group, future.exception())
                self._sent.pop(group, None)
        return done

    def _admin(self, config: dict[str, Any]) -> AdminClient:
        key = json.dumps(sorted(config.items()), default=str)
        if key not in self._admins:
            self._admins[key] = AdminClient(dict(config))
        return self._admins[key]

    def close(self) -> None:
        """Drop the admin clients here: a commit callback still holding the mirror must not be the last
        reference (librdkafka aborts when a client is destroyed from its own thread)."""
        self._admins.clear()
