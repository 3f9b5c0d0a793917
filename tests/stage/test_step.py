"""``apply_once``: one attempt at one batch, as the loop writes it (for hosts that schedule retries
themselves): a refused record is isolated and dead-lettered, a retriable failure is rolled back,
reported to ``on_failure`` and raised without a back-off wait; the source is never rewound."""

from __future__ import annotations

import threading

import pytest

from cdx.errors import FatalError, RetriableError
from cdx.stage.contract import Stage
from cdx.stage.step import apply_once
from tests.stage.test_loop import DictTarget, ListSource


def _stage(target: DictTarget, letters: list[int], failures: list[str]) -> Stage[int, int, int]:
    source = ListSource(10, threading.Event())
    return Stage("step-test", source, target, lambda r, exc: letters.append(r),
                 on_failure=lambda recs, exc: failures.append(type(exc).__name__))


def test_refused_record_is_isolated_and_the_rest_written_in_order() -> None:
    target, letters, failures = DictTarget(refuse={5}), [], []
    stage = _stage(target, letters, failures)
    apply_once(stage, [4, 5, 6, 7])
    assert target.rows == [4, 6, 7] and letters == [5] and target.position == 8 and failures == []


def test_retriable_failure_is_raised_at_once_and_reported() -> None:
    target, letters, failures = DictTarget(outages=1), [], []
    stage = _stage(target, letters, failures)
    with pytest.raises(RetriableError):
        apply_once(stage, [0, 1])
    assert target.rows == [] and failures == ["RetriableError"] and stage.source.rewinds == 0  # type: ignore[attr-defined]
    apply_once(stage, [0, 1])  # the caller's retry
    assert target.rows == [0, 1] and target.position == 2


def test_fatal_failure_propagates() -> None:
    target, letters, failures = DictTarget(fatal={1}), [], []
    with pytest.raises(FatalError):
        apply_once(_stage(target, letters, failures), [0, 1, 2])
    assert target.rows == [] and failures == ["FatalError"]
