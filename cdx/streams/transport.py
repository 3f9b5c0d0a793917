"""faust's aiokafka transport, tightened for the router (verified against faust-streaming 0.15.3 / aiokafka 0.14).

- **read_committed**: faust's worker consumer reads ``read_uncommitted`` unless the app runs
  exactly-once; capture writes the table topics in transactions, so the router must not see
  records of aborted or open transactions. aiokafka reads ``_isolation_level`` when the
  consumer starts, so it is set on the consumer faust builds, before start.
- **ordered, idempotent sends**: ``acks=all`` + ``enable_idempotence=True`` on the producer.
  aiokafka's sender keeps at most one in-flight batch per partition (it mutes a partition
  while its batch is in flight), so retries never reorder records of a partition.
- **commits that keep up**: faust commits the first run of consecutive acked offsets, and the
  offsets of transaction markers between capture's transactions break that run (its gap
  bookkeeping adds the record's own offset again, so the run stops at each marker): the
  committed offset then advances one transaction per commit interval and falls ever further
  behind. The router's only agent acks every record, in offset order per partition, after
  handling it, so everything below the highest acked offset was handled or is not a record
  (markers, aborted data): ``_new_offset`` commits ``highest acked + 1``.
- **no silent send failures**: faust flushes the producer before committing offsets
  (``Consumer._commit_offsets``), but aiokafka's ``flush`` does not raise when a batch failed.
  ``flush`` here re-raises the first failed delivery, so the commit fails and the worker
  crashes instead of committing past a record that was never written.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from faust.exceptions import ProducerSendError
from faust.transport.drivers import aiokafka as fa

log = logging.getLogger("cdx.router")


class RouterConsumerThread(fa.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._isolation_level = "read_committed"
        return consumer


class RouterConsumer(fa.Consumer):
    def _new_consumer_thread(self) -> fa.AIOKafkaConsumerThread:
        return RouterConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def _new_offset(self, tp: Any) -> int | None:
        acked = self._acked[tp]
        if not acked:
            return None
        top = max(acked)
        acked.clear()
        self._acked_index[tp].clear()
        self._gap[tp].chop(0, top + 1)
        return top + 1


class RouterProducer(fa.Producer):
    _failure: BaseException | None = None
    flush_hooks: list[Callable[[], Awaitable[None]]]

    def __post_init__(self) -> None:
        super().__post_init__()
        self.flush_hooks = []

    def _settings_extra(self) -> Any:
        return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}

    def _delivered(self, fut: asyncio.Future) -> None:
        if not fut.cancelled() and fut.exception() is not None and self._failure is None:
            self._failure = fut.exception()
            log.error("router: a routed record was not delivered: %r", self._failure)

    async def send(self, topic: str, key: bytes | None, value: bytes | None, partition: int | None,
                   timestamp: float | None, headers: Any, *, transactional_id: str | None = None) -> Any:
        self.raise_failure()
        fut = await super().send(topic, key, value, partition, timestamp, headers,
                                 transactional_id=transactional_id)
        if isinstance(fut, asyncio.Future):
            fut.add_done_callback(self._delivered)
        return fut

    async def flush(self) -> None:
        await super().flush()
        self.raise_failure()
        for hook in self.flush_hooks:
            await hook()

    def raise_failure(self) -> None:
        if self._failure is not None:
            raise ProducerSendError(f"routed record not delivered: {self._failure!r}")


class RouterTransport(fa.Transport):
    Consumer = RouterConsumer
    Producer = RouterProducer
