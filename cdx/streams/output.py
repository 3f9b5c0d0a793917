"""Routed records out through librdkafka (confluent-kafka): ordered, idempotent, flushed before commits.

``ConfluentSender.send`` only queues (``produce`` + ``poll(0)``); ``flush`` waits until every
queued record is acknowledged (acks=all) and raises if one failed. The faust adapter registers
``flush`` with its producer (``RouterProducer.flush_hooks``), which faust awaits before every
offset commit: a committed source offset never precedes its routed records. librdkafka's
idempotent producer keeps per-partition order across retries.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from confluent_kafka import Producer

from cdx.errors import RetriableError
from cdx.kafka.config import producer_config


class DeliveryFailed(RetriableError):
    """A routed record was not written; the worker stops before committing past it."""


class ConfluentSender:
    """Delivery reports come back for failures only (``delivery.report.only.error``) and the
    producer is polled every ``POLL_EVERY`` sends: both keep the per-record cost low."""

    POLL_EVERY = 256

    def __init__(self, config: Mapping[str, Any], flush_timeout: float = 120.0) -> None:
        self.producer = Producer({**producer_config(config, queue_buffering_max_messages=200_000),
                                  "delivery.report.only.error": True, "on_delivery": self._delivered})
        self.flush_timeout = flush_timeout
        self.failure: Any = None
        self._unpolled = 0

    def _delivered(self, err: Any, _msg: Any) -> None:
        if err is not None and self.failure is None:
            self.failure = err

    async def send(self, topic: str, key: bytes, value: bytes | None) -> None:
        if self.failure is not None:
            raise DeliveryFailed(f"routed record not delivered: {self.failure}")
        while True:
            try:
                self.producer.produce(topic, value, key)
                break
            except BufferError:  # local queue full: let librdkafka drain it
                await asyncio.to_thread(self.producer.poll, 0.05)
        self._unpolled += 1
        if self._unpolled >= self.POLL_EVERY:
            self._unpolled = 0
            self.producer.poll(0)

    async def flush(self) -> None:
        left = await asyncio.to_thread(self.producer.flush, self.flush_timeout)
        if self.failure is not None or left:
            raise DeliveryFailed(f"routed records not delivered: {self.failure or f'{left} still queued'}")
