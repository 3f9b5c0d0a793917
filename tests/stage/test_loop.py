"""The stage loop with an in-memory source and target (this tests the loop, not Kafka nor a database):
batching, positions stored with the rows, rewind + back-off on retriable errors, dead letters for
skippable ones (decoded or refused by the target), fatal errors stop, a stop ends it cleanly."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Sequence
from collections.abc import Set as AbstractSet

import pytest

from cdx.errors import FatalError, RetriableError, SkippableError
from cdx.stage import metrics
from cdx.stage.contract import Stage, StageOptions
from cdx.stage.loop import run_stage

FAST = StageOptions(max_records=4, max_wait=0.0, initial_backoff=0.01, max_backoff=0.02, progress_every=0)


class ListSource:
    """Records 0..n-1; the position is the index after the last record; stops the loop when drained."""

    def __init__(self, n: int, stop: threading.Event, start: int = 0) -> None:
        self.records, self.stop = list(range(n)), stop
        self.cursor = self.committed_at = start
        self.rewinds = self.polls = 0
        self.closed = False

    def open(self) -> None:
        pass

    def poll(self, max_records: int, max_wait: float) -> Sequence[int]:
        self.polls += 1
        batch = self.records[self.cursor:self.cursor + max_records]
        self.cursor += len(batch)
        if not batch:
            self.stop.set()
        return batch

    def position(self, records: Sequence[int]) -> int:
        return records[-1] + 1

    def committed(self, position: int) -> None:
        self.committed_at = position

    def rewind(self) -> None:
        self.rewinds += 1
        self.cursor = self.committed_at

    def close(self) -> None:
        self.closed = True


class DictTarget:
    """Rows and the position, committed together; ``refuse`` values raise SkippableError on write,
    the first ``outages`` begins raise RetriableError, ``fatal`` values raise FatalError."""

    def __init__(self, refuse: AbstractSet[int] = frozenset(), outages: int = 0,
                 fatal: AbstractSet[int] = frozenset()) -> None:
        self.rows: list[int] = []
        self.position = 0
        self.transactions: list[list[int]] = []
        self.refuse, self.outages, self.fatal = set(refuse), outages, set(fatal)
        self._pending: tuple[list[int], int] | None = None
        self.aborts = 0
        self.closed = False

    def open(self) -> None:
        pass

    def begin(self) -> None:
        if self.outages:
            self.outages -= 1
            raise RetriableError("the database is unreachable")

    def write(self, items: Sequence[int], position: int) -> None:
        for i in items:
            if i in self.fatal:
                raise FatalError(f"record {i} breaks the schema")
            if i in self.refuse:
                raise SkippableError(f"record {i} is refused")
        self._pending = (list(items), position)

    def commit(self) -> None:
        assert self._pending is not None
        items, self.position = self._pending
        self.rows += items
        self.transactions.append(items)
        self._pending = None

    def abort(self, error: BaseException | None = None) -> None:
        self.aborts += 1
        self._pending = None

    def close(self) -> None:
        self.closed = True


def make(n: int, target: DictTarget, name: str, **kw: object) -> tuple[Stage[int, int, int], ListSource, list]:
    stop = threading.Event()
    source = ListSource(n, stop)
    letters: list[tuple[int, str]] = []
    stage: Stage[int, int, int] = Stage(name, source, target, lambda r, e: letters.append((r, e.reason)),
                                        options=FAST, **kw)  # type: ignore[arg-type]
    return stage, source, letters


def test_batches_are_written_with_their_position_and_the_loop_closes_both_sides() -> None:
    target = DictTarget()
    stage, source, letters = make(10, target, "t-batches")
    stats = run_stage(stage, source.stop)
    assert target.transactions == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]] and target.position == 10
    assert stats.batches == 3 and stats.records == 10 and not letters
    assert source.closed and target.closed
    assert metrics.UP.labels("t-batches")._value.get() == 0
    assert metrics.BATCHES.labels("t-batches")._value.get() == 3


def test_retriable_errors_rewind_and_back_off_then_nothing_is_lost_or_repeated() -> None:
    target = DictTarget(outages=3)
    failed: list[tuple[list[int], str]] = []
    stage, source, _ = make(6, target, "t-retry", on_failure=lambda rs, e: failed.append((list(rs), str(e))))
    stats = run_stage(stage, source.stop)
    assert target.rows == list(range(6)) and target.position == 6
    assert source.rewinds == 3 and stats.retries == 3
    assert failed == [([0, 1, 2, 3], "the database is unreachable")] * 3
    assert metrics.ERRORS.labels("t-retry", "retriable")._value.get() == 3


def test_a_record_the_target_refuses_is_isolated_and_dead_lettered_the_others_written_once_in_order() -> None:
    target = DictTarget(refuse={5})
    stage, source, letters = make(8, target, "t-refuse")
    stats = run_stage(stage, source.stop)
    assert target.rows == [0, 1, 2, 3, 4, 6, 7] and target.position == 8
    assert letters == [(5, "record 5 is refused")]
    assert [] in target.transactions  # the refused record's position was committed alone
    assert stats.dead_lettered == 1 and stats.records == 8
    assert metrics.RECORDS.labels("t-refuse", "dead_lettered")._value.get() == 1


def test_records_decode_refuses_are_dead_lettered_and_the_batch_goes_on() -> None:
    def decode(r: int) -> int:
        if r % 3 == 0:
            raise SkippableError(f"{r} is a multiple of 3")
        return r * 10

    target = DictTarget()
    stage, source, letters = make(7, target, "t-decode", decode=decode)
    run_stage(stage, source.stop)
    assert target.rows == [10, 20, 40, 50] and target.position == 7
    assert [r for r, _ in letters] == [0, 3, 6]


def test_a_fatal_error_stops_with_its_message_after_rolling_back() -> None:
    target = DictTarget(fatal={6})
    failed: list[str] = []
    stage, source, _ = make(10, target, "t-fatal", on_failure=lambda rs, e: failed.append(str(e)))
    with pytest.raises(FatalError, match="record 6 breaks the schema"):
        run_stage(stage, source.stop)
    assert target.rows == [0, 1, 2, 3] and target.position == 4 and target.aborts == 1
    assert failed == ["record 6 breaks the schema"] and source.closed and target.closed
    assert metrics.ERRORS.labels("t-fatal", "fatal")._value.get() == 1


def test_stop_during_back_off_ends_at_once_without_committing() -> None:
    target = DictTarget(outages=1000)
    stage, source, _ = make(4, target, "t-stop")
    stage.options = StageOptions(initial_backoff=30, max_backoff=30, progress_every=0)
    threading.Timer(0.2, source.stop.set).start()
    stats = run_stage(stage, source.stop)
    assert stats.batches == 0 and target.rows == [] and source.closed


def test_sigterm_finishes_the_current_batch_then_stops() -> None:
    class SignalOnWrite(DictTarget):
        def write(self, items: Sequence[int], position: int) -> None:
            if not self.transactions:
                os.kill(os.getpid(), signal.SIGTERM)
                assert source.stop.wait(10)  # set by the signal watcher thread while the batch is written
            super().write(items, position)

    target = SignalOnWrite()
    stage, source, _ = make(100, target, "t-sigterm")
    previous = signal.getsignal(signal.SIGTERM)
    stats = run_stage(stage, source.stop, handle_signals=True)
    assert stats.batches == 1 and target.rows == [0, 1, 2, 3] and target.position == 4
    assert signal.getsignal(signal.SIGTERM) == previous


def test_a_retriable_decode_error_rolls_back_the_letters_held_and_decodes_the_batch_again() -> None:
    attempts = {"n": 0}

    def decode(r: int) -> int:
        if r == 1:
            raise SkippableError("one is bad")
        if r == 2 and attempts["n"] < 2:
            attempts["n"] += 1
            raise RetriableError("schema not readable yet")
        return r

    class HoldsLetters(DictTarget):
        held: list[int] = []

        def abort(self, error: BaseException | None = None) -> None:
            super().abort(error)
            self.held.clear()

    target = HoldsLetters()
    target.held = []
    stop = threading.Event()
    source = ListSource(4, stop)
    stage: Stage[int, int, int] = Stage("t-decode-retry", source, target, lambda r, e: target.held.append(r),
                                        decode=decode, options=FAST)
    run_stage(stage, stop)
    assert target.rows == [0, 2, 3] and target.held == [1] and source.rewinds == 2
