"""sqlglot, as the extension tooling uses it: one place that maps cdx dialect names to sqlglot's.

``parse_one`` parses one statement and reports why it could not (never logs sqlglot's
"unsupported syntax" warning: a statement sqlglot keeps as an opaque ``Command`` is still
checked token by token by the rules).
"""

from __future__ import annotations

import logging
from typing import Any

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect as GlotDialect
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokens import Token

SQLGLOT_DIALECTS = {"sqlserver": "tsql", "postgresql": "postgres", "sqlite": "sqlite"}

logging.getLogger("sqlglot").setLevel(logging.ERROR)


def glot(dialect: str) -> GlotDialect:
    """sqlglot's dialect object for a cdx dialect name."""
    return GlotDialect.get_or_raise(SQLGLOT_DIALECTS[dialect])


def tokenize(text: str, dialect: str) -> list[Token]:
    """sqlglot tokens of ``text`` (raises ``TokenError`` on an unterminated string or comment)."""
    return list(glot(dialect).tokenize(text))


def parse_one(text: str, dialect: str) -> tuple[exp.Expression | None, str | None]:
    """``(statement, None)`` or ``(None, why)`` when sqlglot cannot parse ``text`` as one statement."""
    try:
        found: list[Any] = glot(dialect).parse(text)
    except (ParseError, TokenError) as e:
        return None, str(e).split("\n")[0]
    statements = [s for s in found if s is not None]
    if len(statements) != 1:
        return None, f"{len(statements)} statements where one was expected"
    return statements[0], None

