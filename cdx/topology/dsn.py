"""Database DSNs: which dialect a DSN is written for, its identity, and a printable form.

Accepted forms:

- sqlite: ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db``, ``sqlite:///:memory:``.
  Relative paths are relative to the current directory, as with every SQLite tool.
- postgresql: ``postgresql://user:pass@host:5432/db`` (or ``postgres://``), or libpq keywords
  ``host=... dbname=...``.
- sqlserver: an ODBC connection string ``Driver={ODBC Driver 18 for SQL Server};Server=...;
  Database=...;`` or ``mssql://user:pass@host:1433/db``.
"""

from __future__ import annotations

import os
import re
from enum import StrEnum
from urllib.parse import urlsplit, urlunsplit


class Dialect(StrEnum):
    """The SQL dialect of a database."""

    SQLITE = "sqlite"
    POSTGRESQL = "postgresql"
    SQLSERVER = "sqlserver"

    @property
    def default_schema(self) -> str:
        """The schema unqualified tables live in: ``main``, ``public`` or ``dbo``."""
        return {"sqlite": "main", "postgresql": "public", "sqlserver": "dbo"}[self.value]


_KV_RE = re.compile(r"\s*([A-Za-z_ ]+?)\s*=\s*(\{[^}]*\}|[^;]*)\s*;?")
_SECRET_KEYS = {"password", "pwd"}


def infer_dialect(dsn: str) -> Dialect | None:
    """The dialect a DSN is written for, or ``None`` if the form is not recognised."""
    lower = dsn.strip().lower()
    if lower.startswith("sqlite:"):
        return Dialect.SQLITE
    if lower.startswith(("postgresql://", "postgres://", "postgresql+", "postgres+")):
        return Dialect.POSTGRESQL
    if lower.startswith(("mssql://", "sqlserver://", "mssql+")) or "driver=" in lower:
        return Dialect.SQLSERVER
    if re.search(r"(^|\s)(dbname|host)\s*=", lower):
        return Dialect.POSTGRESQL
    return None


_FORMS = {
    Dialect.POSTGRESQL: "'postgresql://user@host:5432/db' or 'host=... dbname=...'",
    Dialect.SQLSERVER: "an ODBC string 'Driver={...};Server=...;Database=...;' or 'mssql://user@host/db'",
}


def check_dsn(dialect: Dialect, dsn: str) -> None:
    """Raise ``ValueError`` if ``dsn`` is not a usable DSN for ``dialect``."""
    if not dsn.strip():
        raise ValueError("dsn must not be empty")
    found = infer_dialect(dsn)
    if found is not None and found != dialect:
        raise ValueError(f"dsn looks like a {found.value} DSN but dialect is {dialect.value!r}")
    if dialect is Dialect.SQLITE:
        if not dsn.startswith("sqlite:///") or not dsn[len("sqlite:///"):]:
            raise ValueError(
                f"{dsn!r} is not a SQLite DSN: write 'sqlite:///relative/path.db' or 'sqlite:////absolute/path.db'"
            )
    elif found is None:
        raise ValueError(f"dsn is not a {dialect.value} DSN: write {_FORMS[dialect]}")
    elif "://" in dsn:
        try:
            url = urlsplit(dsn)
            url.port  # noqa: B018 - raises for a port that is not a number from 0 to 65535
        except ValueError as exc:  # the DSN itself is not echoed: it may hold a password
            raise ValueError(f"dsn is not a valid URL ({exc}): write {_FORMS[dialect]}") from None


def sqlite_path(dsn: str | os.PathLike[str]) -> str:
    """The file path of a SQLite DSN: ``sqlite:///`` + path, or a plain path; ``:memory:`` for an in-memory
    database (also ``sqlite://`` and an empty path)."""
    text = str(dsn)
    if text.startswith("sqlite:///"):
        text = text[len("sqlite:///"):]
    elif text.startswith("sqlite://"):
        text = text[len("sqlite://"):] or ":memory:"
    return text or ":memory:"


def dsn_key(dialect: Dialect, dsn: str) -> str:
    """A normalised identity: two DSNs with the same key reach the same database."""
    if dialect is Dialect.SQLITE:
        path = sqlite_path(dsn)
        return "sqlite::memory:" if path == ":memory:" else "sqlite:" + os.path.normpath(os.path.abspath(path))
    if "://" in dsn:
        url = urlsplit(dsn)
        default_port = 5432 if dialect is Dialect.POSTGRESQL else 1433
        try:
            port = url.port or default_port
        except ValueError:
            port = default_port
        return f"{dialect.value}://{(url.hostname or 'localhost').lower()}:{port}{url.path.rstrip('/')}"
    if dialect is Dialect.SQLSERVER:  # ODBC: KEY=value; or KEY={value};
        kv = {m.group(1).strip().lower(): m.group(2).strip("{}").strip() for m in _KV_RE.finditer(dsn)}
    else:  # libpq: key=value separated by spaces
        kv = {k.lower(): v for k, v in (part.split("=", 1) for part in dsn.split() if "=" in part)}
    host = (kv.get("server") or kv.get("host") or "localhost").lower().replace("tcp:", "").replace(",", ":")
    db = kv.get("database") or kv.get("dbname") or kv.get("initial catalog") or ""
    return f"{dialect.value}://{host}/{db}"


def redact(dsn: str) -> str:
    """``dsn`` with any password replaced by ``***`` (safe to print)."""
    if "://" in dsn:
        url = urlsplit(dsn)
        if url.password:
            netloc = url.netloc.replace(f":{url.password}@", ":***@", 1)
            return urlunsplit(url._replace(netloc=netloc))
        return dsn
    return re.sub(r"(?i)\b(password|pwd)\s*=\s*(\{[^}]*\}|[^;\s]*)", r"\1=***", dsn)
