"""The demo's process group: every pipeline role as a separate ``cdx`` process, as in production.

Each process runs ``python -m cdx.cli.main <args>`` in its own session with its log in
``<run>/logs/<name>.log``. ``stop_all`` sends SIGTERM (each role finishes its unit of work),
then SIGKILL after a grace period. Only processes this group started are ever signalled.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Role:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def running(self) -> bool:
        return self.proc.poll() is None


class ProcessGroup:
    def __init__(self, log_dir: Path, env: Mapping[str, str]) -> None:
        self.log_dir = log_dir
        self.env = dict(env)
        self.roles: dict[str, Role] = {}
        log_dir.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, args: Sequence[str]) -> Role:
        log = self.log_dir / f"{name}.log"
        argv = (sys.executable, "-m", "cdx.cli.main", *args)
        with open(log, "ab") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=self.env, start_new_session=True)
        role = Role(name, proc, log)
        self.roles[name] = role
        return role

    def failed(self) -> list[Role]:
        """Roles that exited although nobody asked them to."""
        return [r for r in self.roles.values() if not r.running]

    def stop(self, name: str, timeout: float = 20.0) -> None:
        role = self.roles.pop(name, None)
        if role is not None:
            _terminate([role], timeout)

    def stop_all(self, timeout: float = 20.0) -> None:
        _terminate(list(self.roles.values()), timeout)
        self.roles.clear()


def _terminate(roles: list[Role], timeout: float) -> None:
    for role in roles:
        if role.running:
            os.killpg(role.proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for role in roles:
        try:
            role.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(role.proc.pid, signal.SIGKILL)
            role.proc.wait()
