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


class Unreachable(RetriableError):
    """A dependency (a database, the Kafka cluster) does not answer or refuses the connection.

    ``what`` names it as the user knows it (``the HQ database``, ``Kafka at host:9092``); the message
    says why and how to fix it. Long-running roles retry; one-shot commands report it and exit 1."""

    def __init__(self, what: str, reason: str, hint: str = "") -> None:
        self.what, self.reason, self.hint = what, reason, hint
        super().__init__(f"cannot reach {what}: {reason}" + (f"; {hint}" if hint else ""))

    def about(self, what: str) -> Unreachable:
        """The same failure, naming the dependency as ``what`` (e.g. ``the database of channel s1 (dsn)``)."""
        clone = type(self)(what, self.reason, self.hint)
        clone.__cause__ = self.__cause__
        return clone


class DatabaseUnreachable(Unreachable):
    """A database connection cannot be opened (unknown database, role or host, refused, timed out)."""


class KafkaUnreachable(Unreachable, TimeoutError):
    """No Kafka broker answers at the bootstrap servers (also a ``TimeoutError``, as reads time out)."""
