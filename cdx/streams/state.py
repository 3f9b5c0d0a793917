"""The router's bootstrap state: from which source offset each group receives each source partition.

Compacted topic ``<prefix>._router_state`` (1 partition). One record per (group, source topic,
source partition): key ``["<group>", "<topic>", <partition>]`` (JSON), value
``{"start": N, "done": bool}`` (JSON), a tombstone once the group no longer receives the topic.

``start`` is the first offset the live stream routes to the group; offsets below it reach the
group through a backfill, and ``done`` says the backfill was delivered. See docs/routing.md.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Producer

from cdx.kafka.control import deliver
from cdx.kafka.reading import read_to_end

Key = tuple[str, str, int]


@dataclass(frozen=True)
class Start:
    start: int
    done: bool


class RouterState:
    """In-memory view of the state topic; ``sync`` reads what was added since the last read."""

    def __init__(self, config: Mapping[str, Any], topic: str, producer: Producer, timeout: float = 30.0) -> None:
        self.config = dict(config)
        self.topic = topic
        self.producer = producer
        self.timeout = timeout
        self.entries: dict[Key, Start] = {}
        self._next: dict[int, int] = {}

    def sync(self) -> None:
        for msg in read_to_end(self.config, self.topic, start=self._next or None, timeout=self.timeout):
            self._next[msg.partition() or 0] = (msg.offset() or 0) + 1
            self._apply(msg.key(), msg.value())

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        group, topic, partition = json.loads(key)
        k = (str(group), str(topic), int(partition))
        if value is None:
            self.entries.pop(k, None)
        else:
            v = json.loads(value)
            self.entries[k] = Start(int(v["start"]), bool(v["done"]))

    def get(self, group: str, topic: str, partition: int) -> Start | None:
        return self.entries.get((group, topic, partition))

    def put(self, updates: Mapping[Key, Start | None]) -> None:
        """Write entries (None deletes one) and wait until Kafka has them all."""
        if not updates:
            return
        records = [(json.dumps(list(k)).encode(),
                    None if e is None else json.dumps({"start": e.start, "done": e.done}).encode())
                   for k, e in updates.items()]
        deliver(self.producer, self.topic, records, self.timeout, "router state")
        for k, entry in updates.items():
            if entry is None:
                self.entries.pop(k, None)
            else:
                self.entries[k] = entry

    def keys_for(self, pairs: Iterable[tuple[str, str]]) -> list[Key]:
        """Stored keys of these (group, topic) pairs."""
        wanted = set(pairs)
        return [k for k in self.entries if (k[0], k[1]) in wanted]
