"""Why a database connection could not be opened, in one line: what, why, how to fix it.

Every dialect's ``connect`` turns a driver's failure to *open* a connection into a
``DatabaseUnreachable`` (a ``RetriableError``: long-running roles retry it, one-shot commands report
it). ``naming`` names the database as the caller knows it (``the HQ database``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from cdx.errors import DatabaseUnreachable
from cdx.topology.dsn import redact, sqlite_path

_LABEL = {"sqlite": "SQLite", "postgresql": "PostgreSQL", "sqlserver": "SQL Server"}

# (pattern in the driver's message, hint); first match wins. ``{0}`` is the pattern's first group.
_HINTS: tuple[tuple[str, str], ...] = (
    (r'database "([^"]+)" does not exist', "create the database {0} or fix the database name in the DSN"),
    (r'role "([^"]+)" does not exist', "fix the user name in the DSN or create the role {0}"),
    (r"password authentication failed for user \"([^\"]+)\"", "fix the password of {0} in the DSN"),
    (r"no password supplied", "add the password to the DSN (or a ~/.pgpass entry)"),
    (r"no pg_hba\.conf entry", "allow this client in the server's pg_hba.conf or fix the user/database"),
    (r"Connection refused", "nothing listens there: start the database server or fix the host and port"),
    (r"could not translate host name|Name or service not known|nodename nor servname",
     "fix the host name in the DSN"),
    (r"timeout expired|timed out|Login timeout", "the server did not answer in time: check the host, port and"
                                                   " firewall"),
    (r"Login failed for user '([^']+)'", "fix the user or password of {0} in the connection string"),
    (r"Data source name not found|Can't open lib|ODBC driver '.*' is not installed",
     "install the ODBC driver the connection string names (odbcinst -q -d lists the installed ones)"),
    (r"unable to open database file|No such file or directory|Permission denied|Read-only file system|Is a directory",
     "check that the directory exists and is writable by this user"),
    (r"file is not a database", "the file is not a SQLite database: fix the path in the DSN"),
)


def _reason(exc: BaseException) -> str:
    """The driver's message without its boilerplate (``connection failed: connection to server at ...``)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    driver = re.search(r"Can't open lib '([^']+)'", text)
    if driver:  # pyodbc's ('01000', "[01000] [unixODBC][Driver Manager]Can't open lib ... (SQLDriverConnect)")
        return f"the ODBC driver '{driver.group(1)}' is not installed"
    fatal = re.search(r"FATAL:\s*(.*)", text)
    if fatal:
        return fatal.group(1).strip()
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    text = re.sub(r"^connection failed:\s*", "", text)
    text = re.sub(r"\s*Is the server running on that host and accepting TCP/IP connections\?", "", text)
    return re.sub(r"\[Errno -?\d+\]\s*", "", text).strip()


def _hint(text: str) -> str:
    for pattern, hint in _HINTS:
        m = re.search(pattern, text, re.IGNORECASE)
        if m:
            return hint.format(*(m.groups() or ("",)))
    return "check that the database server runs and that the DSN is right"


def connect_failure(dialect: str, dsn: str, exc: BaseException) -> DatabaseUnreachable:
    """``exc`` (raised while opening ``dsn``) as a ``DatabaseUnreachable`` naming the database and a fix."""
    full = f"{exc} {getattr(exc, 'strerror', '') or ''}"
    err = DatabaseUnreachable(f"the {_LABEL.get(dialect, dialect)} database {redact(str(dsn))}", _reason(exc),
                              _hint(full))
    err.__cause__ = exc
    return err


@contextmanager
def naming(what: str) -> Iterator[None]:
    """Inside the block, a ``DatabaseUnreachable`` names the database as ``what`` (``the HQ database (dsn)``)."""
    try:
        yield
    except DatabaseUnreachable as exc:
        raise exc.about(what) from exc.__cause__


def missing_sqlite_file(dialect: str, dsn: str) -> str | None:
    """The path of a SQLite database ``dsn`` names when the file does not exist (opening it would create
    it, and its folders), else None (another dialect, ``:memory:``, or the file exists)."""
    from pathlib import Path

    if str(dialect) != "sqlite" or not str(dsn).startswith("sqlite:///"):
        return None
    path = sqlite_path(str(dsn))
    return None if path == ":memory:" or Path(path).exists() else path


def require_existing(dialect: str, dsn: str, what: str, fix: str, folder_only: bool = False) -> None:
    """``DatabaseUnreachable`` naming ``what`` and ``fix`` when ``dsn`` is a SQLite file that does not exist:
    a command that only reads or changes an existing database must not create an empty one. With
    ``folder_only`` (a command that may create the file) only its folder must exist: a mistyped path
    is refused, not created folder by folder."""
    from pathlib import Path

    path = missing_sqlite_file(dialect, dsn)
    if path is None:
        return
    if not folder_only:
        raise DatabaseUnreachable(what, f"{path} does not exist", fix)
    folder = Path(path).parent
    if not folder.is_dir():
        raise DatabaseUnreachable(what, f"the folder {folder} does not exist", "fix the path in the DSN or create"
                                                                                  " the folder")
