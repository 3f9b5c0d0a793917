"""``cdx.stage.signals.stop_on_signals``: the stop callback runs on a watcher thread, never in the
interrupted main thread (no deadlock on a lock it holds), and the previous handlers come back."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

from cdx.stage.signals import stop_on_signals


def _wakeup_fd() -> int:
    fd = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(fd)
    return fd


def _until(check: Any) -> bool:
    deadline = time.monotonic() + 10
    while not check() and time.monotonic() < deadline:
        time.sleep(0.01)
    return bool(check())


def test_the_previous_handlers_and_wakeup_fd_are_restored() -> None:
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    fd = _wakeup_fd()
    with stop_on_signals(lambda: None):
        assert signal.getsignal(signal.SIGTERM) is not before[signal.SIGTERM]
        assert _wakeup_fd() != fd
    assert {s: signal.getsignal(s) for s in before} == before and _wakeup_fd() == fd


def test_a_signal_sets_the_event_and_calls_back_once_per_signal() -> None:
    calls: list[str] = []
    with stop_on_signals(lambda: calls.append(threading.current_thread().name)) as stopped:
        os.kill(os.getpid(), signal.SIGINT)  # no KeyboardInterrupt inside the block
        assert stopped.wait(10)
        os.kill(os.getpid(), signal.SIGTERM)
        assert _until(lambda: len(calls) == 2)
    assert calls == ["cdx-signals", "cdx-signals"]


def test_no_deadlock_when_the_signal_lands_while_the_main_thread_holds_the_lock_stop_needs() -> None:
    """Before: the handler ran ``stop()`` in the interrupted main thread; a ``stop`` taking a lock the main
    thread held (as ``Event.wait`` holds its Condition's) never returned, and the main thread with it."""
    lock = threading.Lock()
    done = threading.Event()

    def stop() -> None:
        with lock:
            done.set()

    with stop_on_signals(stop) as stopped:
        with lock:
            os.kill(os.getpid(), signal.SIGTERM)
            assert stopped.wait(10)  # the watcher got it; the Python handler ran here, between bytecodes
            time.sleep(0.05)
            assert not done.is_set()  # stop() waits for the lock, in the watcher thread
        assert done.wait(10)


def test_blocks_nest_and_a_signal_before_the_exit_is_handled_by_then() -> None:
    outer_calls: list[int] = []
    inner_calls: list[int] = []
    with stop_on_signals(lambda: outer_calls.append(1)) as outer:
        with stop_on_signals(lambda: inner_calls.append(1)):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.01)  # the C handler wrote it before the block ends
        assert inner_calls == [1] and outer_calls == []  # the inner watcher drained it before the exit returned
        os.kill(os.getpid(), signal.SIGTERM)
        assert outer.wait(10) and _until(lambda: outer_calls == [1])


def test_off_the_main_thread_nothing_is_installed() -> None:
    seen: dict[str, Any] = {}

    def run() -> None:
        with stop_on_signals(lambda: None) as stopped:
            seen["handler"] = signal.getsignal(signal.SIGTERM)
            seen["stopped"] = stopped.is_set()

    before = signal.getsignal(signal.SIGTERM)
    t = threading.Thread(target=run)
    t.start()
    t.join(10)
    assert seen == {"handler": before, "stopped": False}
