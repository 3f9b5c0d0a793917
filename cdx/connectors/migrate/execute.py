"""Run one script in one transaction, with a time limit.

The batches run in order in the caller's connection inside one transaction; the history row
(and any grants) are written in the same transaction, so a script is either completed and
recorded or leaves nothing behind (PostgreSQL and SQLite roll back DDL; SQL Server too, except
the few statements that cannot run in a transaction, which CDX scripts must not use anyway).

The time limit is enforced from a timer thread through the driver's own cancel call (a small
capability per dialect): SQLite ``interrupt``, psycopg ``cancel``, pyodbc ``Cursor.cancel``.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from cdx.connectors.migrate import history
from cdx.connectors.migrate.scripts import Script
from cdx.dialects import Connection, Dialect
from cdx.stage.sessions import utcnow

CANCEL: dict[str, Callable[[Any, Any], None]] = {
    "sqlite": lambda conn, cur: conn.interrupt(),
    "postgresql": lambda conn, cur: conn.cancel(),
    "sqlserver": lambda conn, cur: cur.cancel(),
}


class AlreadyRecorded(Exception):
    """Another runner completed the script meanwhile (``checksum`` is what it recorded)."""

    def __init__(self, checksum: str) -> None:
        super().__init__(checksum)
        self.checksum = checksum


class ScriptFailed(Exception):
    """The script stopped with an error (``line`` of the file where the failing batch starts)."""

    def __init__(self, message: str, line: int | None = None, timed_out: bool = False) -> None:
        super().__init__(message)
        self.line = line
        self.timed_out = timed_out


@dataclass(frozen=True)
class Completed:
    entry: history.Entry
    grants: int


@contextmanager
def time_limit(dialect: Dialect, conn: Connection, cur: Any, seconds: float, fired: threading.Event) -> Iterator[None]:
    """Cancel what runs on ``cur`` once ``seconds`` pass (the driver's own cancel call, from a timer
    thread), setting ``fired``."""
    def cancel() -> None:
        fired.set()
        CANCEL[dialect.name](conn, cur)

    timer = threading.Timer(seconds, cancel)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def run_script(conn: Connection, dialect: Dialect, script: Script, timeout: float,
               after: Sequence[str] = ()) -> Completed:
    """Run ``script`` then the statements ``after`` (grants) and record it, all in one transaction.

    Raises :class:`ScriptFailed` (the transaction is rolled back) on any database error or
    when ``timeout`` seconds pass, :class:`AlreadyRecorded` when another runner completed it first.
    """
    started = utcnow()
    clock = time.monotonic()
    fired = threading.Event()
    line: int | None = None
    try:
        with dialect.transaction(conn):
            recorded = history.lock_and_read(conn, dialect, script.name)
            if recorded is not None:
                raise AlreadyRecorded(recorded)
            cur = conn.cursor()
            with time_limit(dialect, conn, cur, timeout, fired):
                for batch in script.batches():
                    line = batch.line
                    cur.execute(batch.text)
                    _drain(cur)
                line = None
                for statement in after:
                    cur.execute(statement)
            if fired.is_set():
                raise TimeoutError
            finished = started + dt.timedelta(seconds=time.monotonic() - clock)
            entry = history.Entry(script.name, script.checksum, started, finished)
            history.record(conn, dialect, entry)
    except AlreadyRecorded:
        raise
    except Exception as e:
        if fired.is_set():
            raise ScriptFailed(f"timed out after {_minutes(timeout)}: the limit of one script; split it into"
                               " smaller scripts that each finish in time", line, timed_out=True) from None
        where = f" (batch starting at line {line})" if line is not None else " (granting)"
        raise ScriptFailed(f"{_first_line(e)}{where}", line) from None
    return Completed(entry, len(after))


def _drain(cur: Any) -> None:
    """Consume every result set of a T-SQL batch (pyodbc stops at the first error otherwise)."""
    nextset = getattr(cur, "nextset", None)
    if nextset is None or type(cur).__module__.split(".")[0] != "pyodbc":
        return
    while nextset():
        pass


def _first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.split("\n")[0]


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"
