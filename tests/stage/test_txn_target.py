"""The transactional Kafka target's decisions on a lost producer (``cdx.kafka.txn_target``), without a broker:
the producer is a stand-in that fails as librdkafka's does. The real fence is tested against the broker in
``tests/capture/test_capture_fenced.py``."""

from __future__ import annotations

from typing import Any

import pytest

from cdx.errors import FatalError, RetriableError
from cdx.kafka.transactions import ProducerLost
from cdx.kafka.txn_target import KafkaTxnTarget, Outgoing
from cdx.stage.budget import FailureBudget


class StandIn:
    """What the target uses of ``TransactionalProducer``; ``fail_commit`` raises that on the next commit."""

    def __init__(self) -> None:
        self.in_transaction = False
        self.fail_commit: BaseException | None = None
        self.reopened = 0
        self.produced: list[tuple[str, list[dict[str, Any]]]] = []
        self.committed = 0

    def begin(self) -> None:
        self.in_transaction = True

    def produce_many(self, topic: str, messages: list[dict[str, Any]]) -> None:
        self.produced.append((topic, messages))

    def commit(self) -> None:
        exc, self.fail_commit = self.fail_commit, None
        if exc is not None:
            raise exc
        self.in_transaction = False
        self.committed += 1

    def abort(self) -> None:
        self.in_transaction = False

    def reopen(self) -> None:
        self.reopened += 1
        self.in_transaction = False


def target(still_ours: Any = None, limit: int = 10) -> tuple[KafkaTxnTarget[int], StandIn]:
    t: KafkaTxnTarget[int] = KafkaTxnTarget(
        "test", {"transactional.id": "x"}, lambda pos: [Outgoing("positions", [{"key": b"k", "value": b"%d" % pos}])],
        still_ours=still_ours, budget=FailureBudget("test", limit=limit))
    p = StandIn()
    t.producer = p  # type: ignore[assignment]
    return t, p


def batch(t: KafkaTxnTarget[int], position: int) -> None:
    t.begin()
    try:
        t.write([[Outgoing("data", [{"key": b"a", "value": b"1"}])]], position)
        t.commit()
    except BaseException as exc:
        t.abort(exc)
        raise


def test_records_and_position_in_one_transaction() -> None:
    t, p = target()
    batch(t, 7)
    assert p.produced == [("data", [{"key": b"a", "value": b"1"}]), ("positions", [{"key": b"k", "value": b"7"}])]
    assert p.committed == 1


def test_a_lost_producer_is_retriable_then_replaced_before_the_next_batch() -> None:
    t, p = target()
    p.fail_commit = ProducerLost("fenced")
    with pytest.raises(RetriableError, match="producer lost"):
        batch(t, 1)
    assert t.lost is not None and p.reopened == 0
    batch(t, 1)  # begin recovers first
    assert p.reopened == 1 and t.lost is None and t.recoveries == 1 and p.committed == 1


def test_replaced_when_another_process_holds_the_lease() -> None:
    t, p = target(still_ours=lambda: False)
    p.fail_commit = ProducerLost("fenced")
    with pytest.raises(RetriableError):
        batch(t, 1)
    with pytest.raises(FatalError, match="took over"):
        t.recover()
    assert p.reopened == 0


def test_too_many_losses_stop_the_stage() -> None:
    t, p = target(limit=2)
    for _ in range(2):
        p.fail_commit = ProducerLost("fenced")
        with pytest.raises(RetriableError):
            batch(t, 1)
        t.recover()
    p.fail_commit = ProducerLost("fenced")
    with pytest.raises(RetriableError):
        batch(t, 1)
    with pytest.raises(FatalError, match="3 failures"):
        t.recover()


def test_a_lease_that_cannot_be_checked_now_is_retried_later() -> None:
    answers = iter([RetriableError("coordinator moving"), True])

    def still_ours() -> bool:
        answer = next(answers)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    t, p = target(still_ours=still_ours)
    p.fail_commit = ProducerLost("fenced")
    with pytest.raises(RetriableError):
        batch(t, 1)
    with pytest.raises(RetriableError, match="moving"):
        t.recover()
    t.recover()
    assert p.reopened == 1 and t.lost is None
