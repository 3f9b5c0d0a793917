"""The root typer application and the helper that turns cdx errors into one readable line."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console

from cdx.errors import CdxError

app = typer.Typer(
    name="cdx",
    help="Commerce Data Exchange on Apache Kafka: master data from HQ to every channel, sales back, exactly once.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Not a terminal (CI, logs, pipes): a wide fixed width so lines are not wrapped mid-sentence.
_WIDTH = None if sys.stdout.isatty() else 140
err_console = Console(stderr=True, highlight=False, width=_WIDTH)
console = Console(highlight=False, width=_WIDTH)

F = TypeVar("F", bound=Callable[..., Any])


def user_errors(fn: F) -> F:
    """Decorator for commands: a ``CdxError`` prints ``error: <message>`` and exits 1 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except CdxError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", markup=True, soft_wrap=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]
