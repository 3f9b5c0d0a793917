"""The root typer application and the helper that turns cdx errors into one readable line."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console

from cdx.cli.boundary import error_boundary

if TYPE_CHECKING:
    from rich.table import Table

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

# One-shot commands end in one error line, not in librdkafka's reconnect chatter; the long-running
# roles (and -v) call cdx.cli.common.setup_logging, which lets its warnings through.
logging.getLogger("cdx.kafka.librdkafka").setLevel(logging.CRITICAL)

user_errors = error_boundary
"""Decorator every command carries (see ``cdx.cli.boundary``): one ``error:`` line and exit 1, no traceback."""


def new_table(title: str, columns: Iterable[str], **column_options: Any) -> Table:
    """A rich table titled ``title`` with ``columns`` (``column_options``, e.g. ``overflow="fold"``, for each)."""
    from rich.table import Table

    table = Table(title=title)
    for col in columns:
        table.add_column(col, **column_options)
    return table
