"""Unit tests of the router's recovery budget (``cdx.streams.recovery``) and of the lost-producer test."""

from __future__ import annotations

from typing import Any, cast

import pytest
from confluent_kafka import KafkaError, KafkaException

from cdx.errors import FatalError, RetriableError
from cdx.kafka.transactions import ProducerLost, producer_lost
from cdx.streams.recovery import Recovery


def test_more_failures_than_the_limit_within_the_window_stop_the_worker() -> None:
    r = Recovery(cast(Any, None), limit=3, window=600.0)
    for _ in range(3):
        r.budget.spend(RuntimeError("fenced"))
    with pytest.raises(FatalError, match=r"lost producers .*: 4 failures within 600 s"):
        r.budget.spend(RuntimeError("fenced"))


def test_failures_older_than_the_window_are_forgotten() -> None:
    r = Recovery(cast(Any, None), limit=1, window=0.0)
    for _ in range(5):
        r.budget.spend(RuntimeError("fenced"))  # each one alone in a window of 0 s


def test_a_fenced_or_fatal_producer_is_lost_an_abortable_error_is_not() -> None:
    assert producer_lost(KafkaException(KafkaError(KafkaError.PRODUCER_FENCED)))
    assert producer_lost(KafkaException(KafkaError(KafkaError.INVALID_PRODUCER_EPOCH)))
    assert producer_lost(KafkaException(KafkaError(KafkaError._FENCED)))
    assert producer_lost(KafkaException(KafkaError(KafkaError._TIMED_OUT, fatal=True)))
    assert producer_lost(ProducerLost("x"))
    assert not producer_lost(KafkaException(KafkaError(KafkaError._TIMED_OUT, retriable=True)))
    assert not producer_lost(KafkaException(KafkaError(KafkaError._STATE, txn_requires_abort=True)))
    assert not producer_lost(RetriableError("x"))
