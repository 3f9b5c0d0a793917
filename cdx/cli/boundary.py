"""The error boundary of every cdx command: one ``error:`` message and a non-zero exit, never a traceback.

Use it on a new command with the ``user_errors`` decorator (``cdx.cli.app``), below ``@app.command``::

    @app.command("thing")
    @user_errors
    def thing(topology: Path | None = TOPOLOGY_OPTION) -> None:
        topo = load(topology)        # cdx.cli.common.load: also tells the boundary where Kafka is
        ...

``cdx.cli.main`` also wraps every registered command that lacks it (``install``), so a command
cannot escape it; the decorator keeps in-process callers (typer's ``CliRunner``) covered too.

What the boundary turns into one line (exit 1 unless said otherwise):

- ``CdxError``: its message (it already says what, where and how to fix it);
- a database driver error (psycopg, sqlite3, pyodbc) and a Kafka client error (``KafkaException``,
  a ``TimeoutError`` of a Kafka request): what refused, why, and the fix, naming the Kafka
  servers of the topology the command loaded;
- ``OSError`` (a file that cannot be read or written): the file and the reason;
- ``KeyboardInterrupt``: ``interrupted`` (exit 130);
- anything else is a bug in cdx: one line naming the exception; ``CDX_TRACEBACK=1`` prints the
  traceback as well, for a bug report.

Raise ``ConfigError`` for bad input and ``Unreachable`` (``cdx.errors``) for a dependency that does
not answer; check dependencies before changing anything, so that a failing command leaves nothing
half-applied.
"""

from __future__ import annotations

import functools
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

from rich.markup import escape

from cdx.errors import CdxError

F = TypeVar("F", bound=Callable[..., Any])
MARK = "__cdx_error_boundary__"

KAFKA: dict[str, str] = {}
"""``servers``: the bootstrap servers of the topology the command loaded (see ``cdx.cli.common.load``)."""


def _passes_through(exc: BaseException) -> bool:
    """typer/click control flow (``typer.Exit``, usage errors): typer prints and exits itself."""
    return type(exc).__module__.split(".")[0] in ("typer", "click")


def _driver_error(exc: BaseException) -> str | None:
    module = type(exc).__module__.split(".")[0]
    if module == "psycopg":
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        state = getattr(exc, "sqlstate", None)
        return f"PostgreSQL refused the request: {first}" + (f" (SQLSTATE {state})" if state else "")
    if module == "sqlite3":
        return f"SQLite refused the request: {exc}"
    if module == "pyodbc":
        return f"SQL Server refused the request: {exc}"
    return None


def _kafka_error(exc: BaseException) -> str | None:
    from cdx.kafka.reach import kafka_failure

    servers = KAFKA.get("servers", "the configured bootstrap servers")
    if type(exc).__name__ == "KafkaException" or type(exc).__module__ == "cimpl":
        return str(kafka_failure(servers, exc))
    if isinstance(exc, TimeoutError):
        return str(kafka_failure(servers, exc, "a request timed out"))
    return None


def describe(exc: BaseException) -> tuple[str, int]:
    """The one-line message and exit code for ``exc``."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", 130
    if isinstance(exc, CdxError):
        return str(exc), 1
    text = _driver_error(exc) or _kafka_error(exc)
    if text:
        return text, 1
    if isinstance(exc, OSError) and exc.strerror:
        where = f" {exc.filename}" if exc.filename else ""
        return f"cannot access{where}: {exc.strerror}", 1
    return (f"unexpected {type(exc).__name__}: {exc} (a bug in cdx: run again with CDX_TRACEBACK=1 and report"
            " the traceback)"), 1


def _stderr() -> Any:
    from rich.console import Console

    return Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 140)


def report(exc: BaseException) -> int:
    """Print ``error: <message>`` on stderr; return the exit code."""
    message, code = describe(exc)
    if os.environ.get("CDX_TRACEBACK") and not isinstance(exc, CdxError | KeyboardInterrupt):
        traceback.print_exception(exc, file=sys.stderr)
    _stderr().print(f"[bold red]error:[/] {escape(message)}", markup=True, soft_wrap=True)
    return code


def error_boundary(fn: F) -> F:
    """Decorator: run ``fn``; any exception but typer's own becomes ``error: ...`` and ``sys.exit(code)``."""
    if getattr(fn, MARK, False):
        return fn

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (SystemExit, GeneratorExit):
            raise
        except BaseException as exc:
            if _passes_through(exc):
                raise
            sys.exit(report(exc))

    setattr(wrapper, MARK, True)
    return wrapper  # type: ignore[return-value]


def install(app: Any) -> None:
    """Wrap every command and callback registered on ``app`` and its sub-apps (idempotent)."""
    for info in app.registered_commands:
        if info.callback is not None:
            info.callback = error_boundary(info.callback)
    if app.registered_callback is not None and app.registered_callback.callback is not None:
        app.registered_callback.callback = error_boundary(app.registered_callback.callback)
    for group in app.registered_groups:
        if group.typer_instance is not None:
            install(group.typer_instance)
