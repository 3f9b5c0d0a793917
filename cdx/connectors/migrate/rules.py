"""The extension rules, checked on a script before it runs (sqlglot, in the script's dialect).

A script is refused with every violation, each naming file, line, statement and rule:

- ``ext-schema``: objects are created, altered, dropped and granted on only in the extension
  schemas (``extensions.schemas``; SQLite: tables named ``ext_*``), and always with their schema
  named (an unqualified name lands in ``dbo``/``public``).
- ``protected-schema``: nothing in a protected schema (``crt``, ``ax``, ``dbo``, cdx's own ``cdx``) is
  referenced: not read, written, created, altered or dropped, nor its definition looked up
  (``OBJECT_ID('[ax].[X]')``). A ``CREATE VIEW`` may still read ``extensions.view_readable_schemas``.
- ``protected-type``: no column, parameter or variable uses a type of a protected schema.
- ``upload-table``, ``parent-key``, ``not-null-default``: see :mod:`.table_rules`.

Statements sqlglot keeps as opaque commands (``CREATE TYPE``, ``CREATE TRIGGER`` in T-SQL...) are
still checked token by token for their target and every protected name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlglot import exp
from sqlglot.tokens import Token, TokenType

from cdx.connectors.migrate.context import RuleContext, display
from cdx.connectors.migrate.scripts import Script
from cdx.connectors.migrate.sqlparse import parse_one
from cdx.connectors.migrate.statements import Leaf, Parsed, leaves, word
from cdx.connectors.migrate.table_rules import check_tables

_SKIP_WORDS = {"OR", "ALTER", "REPLACE", "UNIQUE", "CLUSTERED", "NONCLUSTERED", "TEMP", "TEMPORARY", "IF", "NOT",
               "EXISTS", "MATERIALIZED", "OBJECT", "::"}
_LITERAL_NAME = re.compile(r"^\s*\[?\"?([A-Za-z_][A-Za-z0-9_]*)\]?\"?\s*(?:\.|$)")


@dataclass(frozen=True)
class Violation:
    file: str
    line: int
    statement: str
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.rule}: {self.message} (in: {self.statement})"


def check_script(script: Script, ctx: RuleContext) -> list[Violation]:
    """Every rule violation of ``script`` (empty: it may run)."""
    parsed = [Parsed(leaf, None if leaf.condition else parse_one(leaf.text, script.dialect)[0])
              for leaf in leaves(script)]
    temps = {t.name.casefold() for p in parsed if p.tree is not None and p.tree.find(exp.TemporaryProperty)
             for t in [p.tree.find(exp.Table)] if t is not None}
    out: list[Violation] = []
    for p in parsed:
        found: list[tuple[str, str]] = []
        targets = _targets(p, ctx, found, temps)
        types = _types(p, ctx, found)
        _references(p, ctx, found, types | targets)
        out.extend(_violation(script, p.leaf, rule, message) for rule, message in dict.fromkeys(found))
    out.extend(_violation(script, p.leaf, rule, message) for p, rule, message in check_tables(parsed, ctx))
    return sorted(out, key=lambda v: v.line)


def _violation(script: Script, leaf: Leaf, rule: str, message: str) -> Violation:
    first = leaf.text.strip().split("\n")[0]
    return Violation(str(script.path), leaf.line, first if len(first) <= 80 else first[:77] + "...", rule, message)


# -- targets of DDL and grants --------------------------------------------------------------
def _targets(p: Parsed, ctx: RuleContext, out: list[tuple[str, str]], temps: set[str]) -> set[str]:
    """Check what a statement creates, alters, drops or grants on; returns the protected names reported.
    Temporary tables (``#t``, ``CREATE TEMP TABLE t``: ``temps``) live in no schema and are not checked."""
    reported: set[str] = set()
    if p.tree is not None and p.tree.find(exp.TemporaryProperty) is not None:
        return reported
    for verb, kind, ref in _ddl_targets(p):
        schema, name = ref
        if name.startswith(("#", "@")) or (schema is None and name.casefold() in temps):
            continue
        if kind == "SCHEMA":
            if name.casefold() not in ctx.allowed:
                out.append(("ext-schema", f"{verb} SCHEMA {name}: only the extension schemas"
                                          f" ({', '.join(sorted(ctx.allowed))}) may be created"))
            continue
        resolved, _ = ctx.resolve(schema, name)
        if resolved is None:
            hint = f"{sorted(ctx.allowed)[0]}_{name}" if ctx.dialect == "sqlite" else \
                f"{sorted(ctx.allowed)[0]}.{name}"
            out.append(("ext-schema", f"{verb} {kind} {name} names no schema: it would land in the default schema;"
                                      f" write {hint}"))
        elif resolved in ctx.protected:
            reported.add(display(schema, name).casefold())
            out.append(("protected-schema", f"{verb} {kind} {display(schema, name)}: the {resolved} schema is"
                                            " protected; extension objects belong in "
                                            + ", ".join(sorted(ctx.allowed))))
        elif resolved not in ctx.allowed:
            out.append(("ext-schema", f"{verb} {kind} {display(schema, name)}: objects may be created only in the"
                                      f" extension schemas ({', '.join(sorted(ctx.allowed))})"))
    return reported


def _ddl_targets(p: Parsed) -> list[tuple[str, str, tuple[str | None, str]]]:
    """``(verb, kind, (schema, name))`` of each object a statement creates, alters, drops or grants on."""
    tree = p.tree
    if isinstance(tree, exp.Create | exp.Drop | exp.Alter):
        verb = type(tree).__name__.upper()
        kind = str(tree.args.get("kind") or "").upper().split(" ")[-1] or "OBJECT"
        if kind == "SCHEMA":
            table = tree.this if isinstance(tree.this, exp.Table) else tree.this.find(exp.Table)
            return [(verb, kind, (None, (table.db or table.name) if table else ""))]
        target = tree.this.args.get("table") if kind == "INDEX" and tree.this is not None else tree.this
        table = target if isinstance(target, exp.Table) else target.find(exp.Table) if target is not None else None
        if table is not None and table.name:
            return [(verb, kind, (table.db or None, table.name))]
    if isinstance(tree, exp.Grant):
        table = tree.args.get("securable")
        table = table if isinstance(table, exp.Table) else table.find(exp.Table) if table is not None else None
        return [("GRANT", "ON", (table.db or None, table.name))] if table is not None else []
    return _token_targets(p.leaf.tokens)


def _token_targets(tokens: tuple[Token, ...]) -> list[tuple[str, str, tuple[str | None, str]]]:
    if tokens and word(tokens[0]) in ("GRANT", "REVOKE", "DENY"):
        return _grant_target(tokens)
    if not tokens or word(tokens[0]) not in ("CREATE", "ALTER", "DROP"):
        return []
    verb, i = word(tokens[0]), 1
    while i < len(tokens) and word(tokens[i]) in _SKIP_WORDS:
        i += 1
    if i >= len(tokens):
        return []
    kind, i = word(tokens[i]), i + 1
    while i < len(tokens) and word(tokens[i]) in _SKIP_WORDS:
        i += 1
    name, i = _qualified(tokens, i)
    if kind == "SCHEMA" and name:
        return [(verb, kind, (None, name[-1]))]
    found = [(verb, kind, (name[-2] if len(name) > 1 else None, name[-1]))] if name and kind != "INDEX" else []
    if kind in ("INDEX", "TRIGGER"):
        on = next((j for j in range(i, len(tokens)) if word(tokens[j]) == "ON"), None)
        table = _qualified(tokens, on + 1)[0] if on is not None else []
        if table:
            found.append((verb, kind, (table[-2] if len(table) > 1 else None, table[-1])))
    return found


def _grant_target(tokens: tuple[Token, ...]) -> list[tuple[str, str, tuple[str | None, str]]]:
    """``GRANT ... ON [OBJECT::|SCHEMA::]name TO ...`` (T-SQL's class prefix is optional)."""
    on = next((j for j, t in enumerate(tokens) if word(t) == "ON"), None)
    if on is None:
        return []
    i, kind = on + 1, "ON"
    if i + 1 < len(tokens) and word(tokens[i]) in ("OBJECT", "SCHEMA", "TYPE") and tokens[i + 1].text == "::":
        kind = "SCHEMA" if word(tokens[i]) == "SCHEMA" else kind
        i += 2
    name = _qualified(tokens, i)[0]
    if not name:
        return []
    return [(word(tokens[0]), kind, (None if kind == "SCHEMA" or len(name) < 2 else name[-2], name[-1]))]


def _is_name(t: Token) -> bool:
    return t.token_type is TokenType.IDENTIFIER or (t.token_type not in (TokenType.STRING, TokenType.NATIONAL_STRING)
                                                    and (t.text[:1].isalpha() or t.text[:1] in "_#"))


def _qualified(tokens: tuple[Token, ...], i: int) -> tuple[list[str], int]:
    """The dotted name starting at ``tokens[i]`` (its parts) and the index after it."""
    parts: list[str] = []
    while i < len(tokens) and _is_name(tokens[i]):
        parts.append(tokens[i].text)
        if i + 2 < len(tokens) and tokens[i + 1].token_type is TokenType.DOT:
            i += 2
            continue
        i += 1
        break
    return parts, i


# -- protected names anywhere ----------------------------------------------------------------------
def _types(p: Parsed, ctx: RuleContext, out: list[tuple[str, str]]) -> set[str]:
    """Report user-defined types of protected schemas; returns their names (not reported twice)."""
    names: set[str] = set()
    if p.tree is None:
        return names
    for dt in p.tree.find_all(exp.DataType):
        if dt.this is not exp.DataType.Type.USERDEFINED:
            continue
        text = str(dt.args.get("kind") or "")
        parts = [x.strip('[]"') for x in text.split(".")]
        schema, _ = ctx.resolve(parts[-2] if len(parts) > 1 else None, parts[-1])
        if schema in ctx.protected:
            names.add(".".join(parts).casefold())
            out.append(("protected-type", f"type {'.'.join(parts)} belongs to the protected {schema} schema;"
                                          f" create your own type in {sorted(ctx.allowed)[0]} and use it"))
    return names


def _references(p: Parsed, ctx: RuleContext, out: list[tuple[str, str]], skip: set[str]) -> None:
    tokens = p.leaf.tokens
    i = 0
    while i < len(tokens):
        t = tokens[i]
        if t.token_type in (TokenType.STRING, TokenType.NATIONAL_STRING):
            _literal(t.text, ctx, out)
            i += 1
            continue
        if not _is_name(t):
            i += 1
            continue
        parts, j = _qualified(tokens, i)
        i = max(j, i + 1)
        candidates = list(enumerate(parts[:2] if len(parts) > 2 else parts[:1] if len(parts) == 2 else []))
        if ctx.dialect == "sqlite":
            candidates = [(k, s) for k, (s, _) in enumerate(ctx.resolve(None, x) for x in parts) if s]
        for k, schema in candidates:
            low = schema.casefold()
            shown = ".".join(parts[k:k + 2])
            if low not in ctx.protected or shown.casefold() in skip or (p.is_view and low in ctx.view_readable):
                continue
            out.append(("protected-schema", f"{shown} is in the protected {low} schema: extension"
                                            " scripts must not read or change it (use the CRT data service or a"
                                            " view, where allowed)"))


def _literal(text: str, ctx: RuleContext, out: list[tuple[str, str]]) -> None:
    found = _LITERAL_NAME.match(text)
    if found is None:
        return
    schema, _ = ctx.resolve(None, found.group(1)) if ctx.dialect == "sqlite" else (found.group(1).casefold(), "")
    if schema in ctx.protected and ("." in text or text.strip("[] \"").casefold() == schema):
        out.append(("protected-schema", f"'{text}' looks up the definition of the protected {schema} schema:"
                                        " extension scripts may not read protected schema definitions"))
