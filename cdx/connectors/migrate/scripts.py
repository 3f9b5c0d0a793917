"""Extension scripts on disk: which files, which dialect, which order, which checksum.

- Only ``*.sql`` files directly in the directory are scripts; other files (and folders) are
  ignored with a warning, as CDX does. Files whose name starts with ``.`` are ignored silently.
- Dialect by suffix: ``NAME.postgresql.sql`` (also ``.postgres.sql``, ``.pg.sql``),
  ``NAME.sqlite.sql``, ``NAME.sqlserver.sql`` (also ``.tsql.sql``, ``.mssql.sql``); a plain
  ``NAME.sql`` is T-SQL (SQL Server), the language CDX extension scripts are written in. A
  database runs only the scripts of its own dialect.
- Order: alphabetical by file name, case-insensitively (``0001_a.sql`` before ``0002_A.sql``).
- Checksum: SHA-256 of the text with a leading byte-order mark removed and line endings made
  ``\\n``, so that a checkout converting line endings does not look like a changed script.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from cdx.errors import ConfigError

DIALECT_SUFFIXES = {
    "sqlserver": "sqlserver", "tsql": "sqlserver", "mssql": "sqlserver",
    "postgresql": "postgresql", "postgres": "postgresql", "pg": "postgresql",
    "sqlite": "sqlite",
}
DEFAULT_DIALECT = "sqlserver"
_GO = re.compile(r"^[ \t]*GO(?:[ \t]+(\d+))?[ \t]*(?:--.*)?$", re.IGNORECASE)


@dataclass(frozen=True)
class Batch:
    """One unit sent to the database: its text and the 1-based line of the file it starts on."""

    text: str
    line: int


@dataclass(frozen=True)
class Script:
    path: Path
    name: str
    """File name, as recorded in the history table."""
    dialect: str
    text: str
    """Normalised text (no BOM, ``\\n`` line endings)."""
    checksum: str

    def batches(self) -> list[Batch]:
        """The units executed, in order (see :func:`split_batches`)."""
        return split_batches(self.text, self.dialect, self.name)


@dataclass
class ScriptSet:
    directory: Path
    scripts: list[Script] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def for_dialect(self, dialect: str) -> list[Script]:
        """The scripts a database of ``dialect`` runs, in order."""
        return [s for s in self.scripts if s.dialect == dialect]


def normalise(raw: bytes, where: str) -> str:
    """The script text for hashing and running (UTF-8, BOM removed, ``\\n`` line endings)."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{where}: not UTF-8 text (byte {e.start}); save the script as UTF-8") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def checksum(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def dialect_of(name: str) -> str:
    """The dialect a script file name declares (see module doc)."""
    stem = name[:-4]
    suffix = stem.rpartition(".")[2].lower() if "." in stem else ""
    return DIALECT_SUFFIXES.get(suffix, DEFAULT_DIALECT)


def read_script(path: Path) -> Script:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read the extension script {path}: {e.strerror or e}") from None
    text = normalise(raw, str(path))
    return Script(path, path.name, dialect_of(path.name), text, checksum(text))


def discover(directory: str | Path) -> ScriptSet:
    """The scripts of ``directory`` in run order, with a warning per ignored entry."""
    root = Path(directory)
    if not root.is_dir():
        raise ConfigError(f"the extension scripts directory {root} does not exist or is not a directory;"
                          " create it or fix --scripts / extensions.scripts")
    found = ScriptSet(root)
    for entry in sorted(root.iterdir(), key=lambda p: (p.name.casefold(), p.name)):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            found.warnings.append(f"{entry}: a folder is not a script; ignored (scripts sit directly in {root})")
        elif entry.suffix.lower() != ".sql":
            found.warnings.append(f"{entry}: not a .sql file; ignored")
        else:
            found.scripts.append(read_script(entry))
    return found


def split_batches(text: str, dialect: str, where: str = "script") -> list[Batch]:
    """Cut a script into the units executed one after the other.

    SQL Server: batches separated by ``GO`` lines (``GO n`` repeats the batch n times);
    SQLite: complete statements (``sqlite3.complete_statement``; triggers stay whole);
    PostgreSQL: statements split on ``;`` by sqlglot's tokenizer (dollar-quoted bodies stay whole).
    """
    if dialect == "sqlserver":
        return _tsql_batches(text)
    if dialect == "sqlite":
        return _sqlite_statements(text)
    return _postgres_statements(text, where)


def _tsql_batches(text: str) -> list[Batch]:
    out: list[Batch] = []
    lines: list[str] = []
    start = 1
    for number, line in enumerate(text.split("\n"), start=1):
        go = _GO.match(line)
        if go is None:
            lines.append(line)
            continue
        body = "\n".join(lines)
        if body.strip():
            out.extend(Batch(body, start) for _ in range(int(go.group(1) or 1)))
        lines, start = [], number + 1
    body = "\n".join(lines)
    if body.strip():
        out.append(Batch(body, start))
    return out


def _sqlite_statements(text: str) -> list[Batch]:
    out: list[Batch] = []
    pending: list[str] = []
    start = 1
    for number, line in enumerate(text.split("\n"), start=1):
        if not pending and not line.strip():
            continue
        if not pending:
            start = number
        pending.append(line)
        body = "\n".join(pending)
        if sqlite3.complete_statement(body):
            out.append(Batch(body, start))
            pending = []
    rest = "\n".join(pending)
    if rest.strip() and not _only_comments(rest):
        out.append(Batch(rest, start))
    return out


def _only_comments(text: str) -> bool:
    stripped = re.sub(r"--[^\n]*|/\*.*?\*/", "", text, flags=re.DOTALL)
    return not stripped.strip()


def _postgres_statements(text: str, where: str) -> list[Batch]:
    from sqlglot.errors import TokenError
    from sqlglot.tokens import TokenType

    from cdx.connectors.migrate.sqlparse import tokenize

    try:
        tokens = tokenize(text, "postgresql")
    except TokenError as e:
        raise ConfigError(f"{where}: cannot be read as PostgreSQL: {e}") from None
    out: list[Batch] = []
    first = None
    for token in tokens:
        if token.token_type is TokenType.SEMICOLON:
            if first is not None:
                out.append(Batch(text[first.start:token.start], first.line))
            first = None
        elif first is None:
            first = token
    if first is not None:
        out.append(Batch(text[first.start:], first.line))
    return out
