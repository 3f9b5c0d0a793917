"""Cut a script into the single statements the rules check, each with its line in the file.

PostgreSQL and SQLite: the executed units already are single statements. T-SQL: inside each
``GO`` batch, statements need no ``;`` and nest in ``IF``/``WHILE``/``BEGIN ... END``, which
sqlglot does not split, so :func:`tsql_leaves` walks the tokens: control flow is unwrapped
(an ``IF`` condition becomes a ``condition`` leaf, checked token by token), a ``CREATE``/``ALTER``
of a procedure, function, view or trigger takes the rest of its batch (T-SQL requires it alone
in its batch), and any other statement ends at ``;`` or where the next one visibly starts.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlglot import exp
from sqlglot.errors import TokenError
from sqlglot.tokens import Token, TokenType

from cdx.connectors.migrate.scripts import Batch, Script
from cdx.connectors.migrate.sqlparse import tokenize
from cdx.errors import ConfigError

STRONG = {"CREATE", "ALTER", "DROP", "GRANT", "REVOKE", "DENY", "DECLARE", "PRINT", "TRUNCATE", "IF", "WHILE",
          "MERGE", "RETURN", "THROW", "RAISERROR", "USE", "BEGIN", "END", "ELSE", "EXEC", "EXECUTE", "COMMIT",
          "ROLLBACK", "SAVE", "GOTO", "BREAK", "CONTINUE", "WAITFOR"}
"""Words that start a new statement wherever they stand at the top level."""
WEAK = {"SELECT", "INSERT", "UPDATE", "DELETE", "SET"}
"""Words that start a new statement after a DDL-like statement only (after DML they may continue it)."""
DDL_FIRST = {"CREATE", "ALTER", "DROP", "GRANT", "REVOKE", "DENY", "DECLARE", "PRINT", "TRUNCATE", "USE",
             "RETURN", "THROW", "RAISERROR", "EXEC", "EXECUTE"}
MODULES = {"PROCEDURE", "PROC", "FUNCTION", "VIEW", "TRIGGER"}
TRANSACTION_WORDS = {"TRAN", "TRANSACTION", "DISTRIBUTED", "DIALOG", "CONVERSATION"}


@dataclass(frozen=True)
class Leaf:
    text: str
    line: int
    tokens: tuple[Token, ...]
    condition: bool = False
    """An ``IF``/``WHILE`` condition (checked token by token only)."""


def leaves(script: Script) -> list[Leaf]:
    """Every statement of ``script`` (see module doc). Raises ``ConfigError`` when it cannot be tokenized."""
    out: list[Leaf] = []
    for batch in script.batches():
        try:
            tokens = tokenize(batch.text, script.dialect)
        except TokenError as e:
            raise ConfigError(f"{script.path}:{batch.line}: cannot be read as {script.dialect}: {e}") from None
        if not tokens:
            continue
        if script.dialect != "sqlserver":
            out.append(_leaf(batch, tokens, 0, len(tokens)))
            continue
        out.extend(_leaf(batch, tokens, s, e, c) for s, e, c in tsql_spans(tokens))
    return out


def _leaf(batch: Batch, tokens: list[Token], start: int, end: int, condition: bool = False) -> Leaf:
    last = tokens[end - 1]
    text = batch.text[tokens[start].start:last.end + 1]
    return Leaf(text, batch.line + tokens[start].line - 1, tuple(tokens[start:end]), condition)


def word(token: Token) -> str:
    """The upper-cased keyword of a token, or '' for quoted identifiers, strings and symbols."""
    if token.token_type in (TokenType.IDENTIFIER, TokenType.STRING, TokenType.NATIONAL_STRING):
        return ""
    text = token.text
    return text.upper() if text[:1].isalpha() else ""


def tsql_spans(tokens: list[Token]) -> list[tuple[int, int, bool]]:
    """``(start, end, is_condition)`` token spans of the T-SQL statements of one batch."""
    spans: list[tuple[int, int, bool]] = []
    i, n = 0, len(tokens)
    while i < n:
        w = word(tokens[i])
        nxt = word(tokens[i + 1]) if i + 1 < n else ""
        if tokens[i].token_type is TokenType.SEMICOLON or w in ("ELSE", "END") or (w == "BEGIN" and
                                                                                   nxt not in TRANSACTION_WORDS):
            i += 2 if w in ("BEGIN", "END") and nxt in ("TRY", "CATCH") else 1
            continue
        if w in ("IF", "WHILE"):
            j = _condition_end(tokens, i + 1)
            spans.append((i, j, True))
            i = j
            continue
        if w in ("CREATE", "ALTER") and _module_follows(tokens, i + 1):
            spans.append((i, n, False))
            break
        j = _statement_end(tokens, i)
        spans.append((i, j, False))
        i = j
    return spans


def _module_follows(tokens: list[Token], i: int) -> bool:
    words = [word(t) for t in tokens[i:i + 3]]
    if words[:2] == ["OR", "ALTER"]:
        words = words[2:]
    return bool(words) and words[0] in MODULES


def _condition_end(tokens: list[Token], i: int) -> int:
    depth = 0
    for j in range(i, len(tokens)):
        t = tokens[j]
        if t.token_type is TokenType.L_PAREN:
            depth += 1
        elif t.token_type is TokenType.R_PAREN:
            depth -= 1
        elif depth == 0 and (word(t) in STRONG or word(t) in WEAK):
            return j
    return max(i, len(tokens))


def _statement_end(tokens: list[Token], start: int) -> int:
    first = word(tokens[start])
    depth = cases = 0
    for i in range(start + 1, len(tokens)):
        t, w = tokens[i], word(tokens[i])
        prev = word(tokens[i - 1])
        if t.token_type is TokenType.L_PAREN:
            depth += 1
        elif t.token_type is TokenType.R_PAREN:
            depth -= 1
        elif w == "CASE":
            cases += 1
        elif w == "END" and cases:
            cases -= 1
        elif depth <= 0 and (t.token_type is TokenType.SEMICOLON or (not cases and _starts_statement(first, prev, w))):
            return i
    return max(start + 1, len(tokens))


def _starts_statement(first: str, prev: str, w: str) -> bool:
    if w in ("ELSE",) or w == "":
        return w == "ELSE"
    if w in STRONG:
        if w == "DROP" and first == "ALTER":
            return False
        if w == "GRANT" and prev == "WITH":
            return False
        return not (w in ("EXEC", "EXECUTE") and first == "INSERT")
    if w in WEAK:
        if prev == "FOR" or (w == "SET" and first == "ALTER") or first in ("GRANT", "REVOKE", "DENY"):
            return False
        return first in DDL_FIRST
    return False


@dataclass
class Parsed:
    """One leaf statement and its sqlglot tree (``None`` for a conditional leaf, checked by text)."""

    leaf: Leaf
    tree: exp.Expression | None

    @property
    def is_view(self) -> bool:
        return isinstance(self.tree, exp.Create) and str(self.tree.args.get("kind", "")).upper() == "VIEW"
