"""What is wrong with a topology or seed file: :class:`Issue` records and the errors carrying them."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from cdx.errors import ConfigError


@dataclass(frozen=True)
class Issue:
    """One problem: where (``path`` like ``subjobs[3].fields[2].name``, 1-based ``line``, ``file``) and what."""

    path: str
    line: int | None
    message: str
    file: str | None = None

    def located(self, file: str | None = None, line: int | None = None) -> Issue:
        """A copy with ``file`` and/or ``line`` filled in where they were unknown."""
        return replace(self, file=self.file or file, line=self.line if self.line is not None else line)

    def __str__(self) -> str:
        where = self.file or ""
        if self.line is not None:
            where = f"{where}:{self.line}" if where else f"line {self.line}"
        head = f"{where}: " if where else ""
        path = f"{self.path}: " if self.path else ""
        return f"{head}{path}{self.message}"


def _natural(path: str) -> str:
    return re.sub(r"\d+", lambda m: m.group().zfill(8), path)


def _sorted(issues: Iterable[Issue]) -> list[Issue]:
    unique = list(dict.fromkeys(issues))
    return sorted(unique, key=lambda i: (i.file or "", i.line if i.line is not None else 1 << 30, _natural(i.path)))


class IssuesError(ConfigError):
    """A :class:`~cdx.errors.ConfigError` listing every :class:`Issue` found (sorted by file and line)."""

    noun = "input"

    def __init__(self, issues: Sequence[Issue], source: str | None = None) -> None:
        self.issues: list[Issue] = _sorted(i.located(file=source) for i in issues)
        self.source = source
        n = len(self.issues)
        head = f"{source or f'the {self.noun}'} is invalid ({n} problem{'s' if n != 1 else ''}):"
        super().__init__("\n".join([head, *(f"  {issue}" for issue in self.issues)]))


class TopologyError(IssuesError):
    """``topology.yaml`` is invalid; ``issues`` lists every problem with its path and line."""

    noun = "topology"


class SeedError(IssuesError):
    """A RetailCdxSeedData XML file (or the merge of several) is invalid."""

    noun = "seed data"
