"""Pipeline test helpers: HQ and channel databases on one dialect, the real roles as ``cdx`` processes."""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from cdx.demo.processes import ProcessGroup
from cdx.dialects import Connection, connect, get_dialect


def database(dialect: str, tmp: Path, name: str, postgres_server: str | None) -> str:
    """A fresh SQLite file or PostgreSQL database named ``name`` (made unique), as a DSN."""
    if dialect == "sqlite":
        return f"sqlite:///{tmp}/{name}.db"
    from cdx.infra.postgres import launcher

    assert postgres_server is not None
    return launcher.create_database(postgres_server, f"p_{name}_{uuid.uuid4().hex[:8]}")


class Databases:
    """Open connections by DSN (closed by ``close``)."""

    def __init__(self, dialect: str) -> None:
        self.dialect_name = dialect
        self.dialect = get_dialect(dialect)
        self._conns: dict[str, Connection] = {}

    def conn(self, dsn: str) -> Connection:
        if dsn not in self._conns:
            self._conns[dsn] = connect(self.dialect_name, dsn)
        return self._conns[dsn]

    def run(self, dsn: str, *statements: tuple[str, tuple[object, ...]]) -> None:
        """Statements in one transaction; ``{p}`` in the SQL is the dialect's placeholder."""
        ph = "?" if self.dialect_name == "sqlite" else "%s"
        conn = self.conn(dsn)
        with self.dialect.transaction(conn):
            for sql, args in statements:
                conn.execute(sql.replace("{p}", ph), tuple(self.dialect.encode(a) for a in args))

    def close(self) -> None:
        for c in self._conns.values():
            c.close()
        self._conns.clear()


def pipeline(tmp: Path, topology: Path) -> ProcessGroup:
    """A process group whose roles read ``topology`` (``CDX_TOPOLOGY``), logs under ``tmp/logs``."""
    env = {**os.environ, "CDX_TOPOLOGY": str(topology), "PYTHONUNBUFFERED": "1"}
    return ProcessGroup(tmp / "logs", env)


def cli(group: ProcessGroup, *args: str) -> None:
    """One ``cdx`` command to completion (raises with its output on failure)."""
    import subprocess

    done = subprocess.run([sys.executable, "-m", "cdx.cli.main", *args], env=group.env, capture_output=True,
                          text=True, timeout=120)
    if done.returncode != 0:
        raise AssertionError(f"cdx {' '.join(args)} failed: {done.stdout}{done.stderr}")


def wait_for(check: Callable[[], str | None], group: ProcessGroup, timeout: float, what: str) -> None:
    """Until ``check`` returns None (it returns what is still wrong); fails with the roles' logs."""
    deadline = time.monotonic() + timeout
    wrong: str | None = "not checked"
    while time.monotonic() < deadline:
        dead = group.failed()
        if dead:
            raise AssertionError(f"{dead[0].name} exited: {tail(dead[0].log)}")
        wrong = check()
        if wrong is None:
            return
        time.sleep(0.5)
    logs = "\n".join(f"--- {r.name}\n{tail(r.log)}" for r in group.roles.values())
    raise AssertionError(f"{what} not reached in {timeout}s: {wrong}\n{logs}")


def tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
