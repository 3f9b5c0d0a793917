"""Errors typed by what the caller should do with them.

- ``FatalError``: stop; the user must fix something (configuration, schema). Its
  message names the file/line/path, what is wrong and how to fix it.
- ``RetriableError``: transient (a database or broker unreachable); retry with backoff.
- ``SkippableError``: this one record cannot be processed; send it to the dead-letter
  topic with the reason and move on. Never drop it silently.
"""

from __future__ import annotations


class CdxError(Exception):
    """Base of every error cdx raises on purpose."""


class FatalError(CdxError):
    """Stop and tell the user; retrying will not help."""


class ConfigError(FatalError):
    """Invalid user input (topology.yaml, seed XML, command options)."""


class RetriableError(CdxError):
    """A transient failure: retry with backoff."""


class SkippableError(CdxError):
    """One record cannot be processed: dead-letter it with ``reason`` and continue."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
