"""Start and stop background processes by pid file: never by name.

A pid file records the pid and the process start time (from /proc) so that a
recycled pid is never mistaken for ours.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path


def proc_stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the parenthesised command name (state first, start
    time 20th), or None when there is no such process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def spawn(argv: Sequence[str], *, log_file: Path, pid_file: Path, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> int:
    """Start ``argv`` detached in its own session; write its pid file; return the pid."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        proc = subprocess.Popen(
            list(argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env=env, cwd=cwd,
        )
    stat = proc_stat(proc.pid)
    pid_file.write_text(f"{proc.pid} {stat[19] if stat is not None else ''}\n")
    return proc.pid


def read_pid(pid_file: Path) -> int | None:
    """The pid recorded in ``pid_file`` if that very process is still alive, else None."""
    try:
        parts = pid_file.read_text().split()
    except OSError:
        return None
    if not parts:
        return None
    pid = int(parts[0])
    stat = proc_stat(pid)
    if stat is None or stat[0] == "Z" or (len(parts) > 1 and parts[1] != stat[19]):
        return None  # gone, a zombie, or the pid was recycled by another process
    return pid


def stop(pid_file: Path, *, timeout: float = 30.0) -> bool:
    """SIGTERM the recorded process (SIGKILL after ``timeout``); remove the pid file.

    Returns True when a live process was stopped.
    """
    pid = read_pid(pid_file)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return False
    with suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and read_pid(pid_file) is not None:
        _reap(pid)
        time.sleep(0.1)
    if read_pid(pid_file) is not None:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
        _reap(pid)
    pid_file.unlink(missing_ok=True)
    return True


def kill9(pid_file: Path) -> int | None:
    """SIGKILL the recorded process at once (crash injection). Returns the pid killed."""
    pid = read_pid(pid_file)
    if pid is None:
        return None
    os.kill(pid, signal.SIGKILL)
    for _ in range(50):
        _reap(pid)
        if read_pid(pid_file) is None:
            break
        time.sleep(0.05)
    return pid


def _reap(pid: int) -> None:
    with suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
