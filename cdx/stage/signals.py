"""The one SIGTERM/SIGINT helper: a stop callback for the duration of a block, the previous handlers restored.

Every long-running command (roles, ``cdx route``, one-shot catch-ups such as ``cdx channel bootstrap``) and
:func:`cdx.stage.loop.run_stage` stop through :func:`stop_on_signals`. The handlers live only as long as
the block: a command run in-process (typer's ``CliRunner`` in a test, an embedding program) leaves
SIGTERM and SIGINT bound as they were, not to a finished host.

Why a watcher thread. A Python signal handler runs in the main thread between two bytecodes, at any
point of its code, also while it holds a lock: ``threading.Event.wait`` holds the event's ``Condition``
lock around its wait, so a handler calling ``Event.set()`` (or a ``stop()`` that takes a lock, logs, or
starts a thread) could wait forever for a lock its own thread holds. So the Python handler does nothing
at all; :func:`signal.set_wakeup_fd` makes the interpreter's C-level handler write the signal number to
one end of a socket pair (no Python code, no lock), and a small daemon thread reading the other end sets
the ``stopped`` event and calls the callback. (Starting a thread from the handler was the other option;
``Thread.start`` takes the ``threading`` module's own locks and waits on an ``Event``, the same hazard.)
A bonus: the callback runs at once even while the main thread is blocked in C code (a librdkafka call, a
database driver) that does not return to the interpreter for a while.

The wakeup fd is process-wide: blocks nest (an inner block takes it over and gives the outer one's back
on exit), and a block restores whatever fd was set before it (-1 when none).
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger("cdx.stage")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _record(_signum: int, _frame: Any) -> None:
    """The Python-level handler: nothing to do (the C handler already wrote the signal to the wakeup fd;
    taking a lock or logging here could deadlock, see the module docstring)."""


@contextmanager
def stop_on_signals(stop: Callable[[], None]) -> Iterator[threading.Event]:
    """Inside the block, SIGTERM and SIGINT set the yielded event and call ``stop()`` (on a watcher
    thread, once per signal: ``stop`` must be idempotent and thread-safe); on exit, the previous handlers
    and wakeup fd are restored, and a signal that arrived before has been handled (its callback returned).

    Only the main thread may install handlers: elsewhere the block installs nothing and the event is
    never set by a signal (the caller stops the work itself)."""
    stopped = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stopped
        return
    reader, writer = socket.socketpair()
    writer.setblocking(False)  # set_wakeup_fd requires it: the C handler must never block
    try:
        old_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    except BaseException:
        reader.close()
        writer.close()
        raise
    watcher = threading.Thread(target=_watch, args=(reader, stopped, stop), name="cdx-signals", daemon=True)
    watcher.start()
    previous: dict[int, Any] = {}
    try:
        previous = {s: signal.signal(s, _record) for s in STOP_SIGNALS}
        yield stopped
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _restore_wakeup_fd(old_fd)
        writer.close()  # the watcher reads what is left, then sees the end
        watcher.join(10.0)
        reader.close()


def _restore_wakeup_fd(fd: int) -> None:
    """Give the wakeup fd back to its previous owner; none (-1) when that fd is no longer usable (never
    leave ours: it is about to be closed and its number reused)."""
    try:
        signal.set_wakeup_fd(fd)
    except (ValueError, OSError) as exc:
        log.debug("the previous signal wakeup fd %d is gone (%s): none set", fd, exc)
        signal.set_wakeup_fd(-1)


def _watch(reader: socket.socket, stopped: threading.Event, stop: Callable[[], None]) -> None:
    """Read signal numbers until the writing end is closed; a stop signal sets ``stopped``, calls ``stop``."""
    while True:
        try:
            data = reader.recv(64)
        except OSError:
            return
        if not data:
            return
        for signum in data:
            if signum not in STOP_SIGNALS:
                continue  # another signal with a Python handler (SIGHUP of the router): its handler runs
            log.info("signal %d: finishing the current unit of work, then stopping", signum)
            stopped.set()
            try:
                stop()
            except Exception as exc:  # the watcher lives on: a second signal tries again
                log.error("signal %d: stopping failed: %s", signum, exc)
