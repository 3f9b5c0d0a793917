"""Several worker processes serving one listening socket, supervised by the process that bound it.

:func:`supervise` forks ``count`` workers; each runs ``run_worker()`` (its own HQ connection pool
and uvicorn server on the inherited socket; nothing is shared between workers but the socket and
HQ itself, where idempotency keys, balances and sequences live, so no guarantee depends on which
worker answers). The supervisor:

- starts a replacement when a worker dies unexpectedly (after a second, so a worker that cannot
  start does not spin the CPU);
- on SIGTERM/SIGINT passes SIGTERM on, lets in-flight requests finish, and SIGKILLs any worker
  still running ``grace_seconds`` later;
- takes its workers with it when it is SIGKILLed itself (Linux ``PR_SET_PDEATHSIG``; elsewhere a
  worker notices its parent is gone within a second), so "kill the service" means all of it.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from types import FrameType

log = logging.getLogger("cdx.realtime")
RESTART_DELAY_S = 1.0
POLL_S = 0.2


def default_workers(dialect_name: str) -> int:
    """One worker per CPU; SQLite one (its writers queue on one file lock anyway)."""
    return 1 if dialect_name == "sqlite" else max(1, os.cpu_count() or 1)


def supervise(count: int, run_worker: Callable[[], None], *, grace_seconds: float) -> None:
    """Run ``count`` forked workers until SIGTERM/SIGINT (see module docstring); returns when all exited."""
    children: dict[int, int] = {}
    stop_at: list[float] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if not stop_at:
            log.info("stopping %d workers (%s)", len(children), signal.Signals(signum).name)
            stop_at.append(time.monotonic() + grace_seconds)
        for pid in list(children):
            _kill(pid, signal.SIGTERM)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for slot in range(count):
            children[_fork(run_worker)] = slot
        log.info("cdx realtime: %d workers (pids %s)", count, ", ".join(map(str, children)))
        while children:
            _reap(children, run_worker, stopping=bool(stop_at))
            if stop_at and time.monotonic() > stop_at[0]:
                for pid in list(children):
                    _kill(pid, signal.SIGKILL)
            time.sleep(POLL_S)
    finally:
        for pid in list(children):
            _kill(pid, signal.SIGKILL)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _reap(children: dict[int, int], run_worker: Callable[[], None], *, stopping: bool) -> None:
    """Collect exited workers; replace them unless the service is stopping."""
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            children.clear()
            return
        if pid == 0:
            return
        slot = children.pop(pid, None)
        if slot is None or stopping:
            continue
        log.warning("worker %d (pid %d) exited unexpectedly (%s); starting another", slot, pid,
                    _describe(status))
        time.sleep(RESTART_DELAY_S)
        children[_fork(run_worker)] = slot


def _fork(run_worker: Callable[[], None]) -> int:
    parent = os.getpid()
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        _die_with_parent(parent)
        run_worker()
        code = 0
    except BaseException:  # the worker's last word; the supervisor logs its exit and replaces it
        log.exception("worker failed")
    finally:
        os._exit(code)


def _die_with_parent(parent: int) -> None:
    """Be SIGKILLed when the supervisor dies (Linux), else exit once it is gone (checked each second)."""
    with suppress(OSError, AttributeError):  # no libc prctl: watch the parent instead
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(1, int(signal.SIGKILL), 0, 0, 0) == 0:  # PR_SET_PDEATHSIG
            if os.getppid() != parent:
                os._exit(1)
            return

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(1)
    threading.Thread(target=watch, name="cdx-parent-watch", daemon=True).start()


def _kill(pid: int, sig: signal.Signals) -> None:
    with suppress(ProcessLookupError):  # exited meanwhile
        os.kill(pid, sig)


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"
