"""``${VAR}`` and ``${VAR:-default}`` references in topology strings, resolved at load time.

Rules (a subset of POSIX shell expansion):

- ``${VAR}``: the value of ``VAR``; an unset variable is an error naming it.
- ``${VAR:-default}``: ``default`` when ``VAR`` is unset or empty; ``default`` may itself
  contain references (``${A:-${B}}``).
- ``$${`` is a literal ``${``; any other ``$`` is literal.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from cdx.errors import ConfigError

_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class EnvError(ConfigError):
    """A reference cannot be resolved; ``variable`` names it when a variable is missing."""

    def __init__(self, message: str, variable: str | None = None) -> None:
        super().__init__(message)
        self.variable = variable


def has_reference(text: str) -> bool:
    """True if ``text`` contains a ``${...}`` reference (or a ``$${`` escape)."""
    return "${" in text


def escape(text: str) -> str:
    """Escape ``text`` so that :func:`resolve` returns it unchanged."""
    return text.replace("${", "$${")


def resolve(text: str, environ: Mapping[str, str]) -> str:
    """Expand every reference in ``text`` using ``environ``; raise :class:`EnvError` on failure."""
    return _expand(text, 0, environ, nested=False)[0]


def _expand(text: str, pos: int, environ: Mapping[str, str], nested: bool) -> tuple[str, int]:
    """Expand from ``pos``; when ``nested``, stop at the ``}`` closing a default and return past it."""
    out: list[str] = []
    while pos < len(text):
        ch = text[pos]
        if nested and ch == "}":
            return "".join(out), pos + 1
        if text.startswith("$${", pos):
            out.append("${")
            pos += 3
        elif text.startswith("${", pos):
            value, pos = _reference(text, pos + 2, environ)
            out.append(value)
        else:
            out.append(ch)
            pos += 1
    if nested:
        raise EnvError(f"unterminated '${{' in {text!r}: add the closing '}}'")
    return "".join(out), pos


def _reference(text: str, pos: int, environ: Mapping[str, str]) -> tuple[str, int]:
    match = _NAME_RE.match(text, pos)
    if not match:
        raise EnvError(f"invalid reference in {text!r}: expected a variable name after '${{'")
    name = match.group(0)
    pos = match.end()
    if text.startswith("}", pos):
        if name not in environ:
            raise EnvError(
                f"environment variable {name} is not set (referenced as '${{{name}}}'); "
                f"set it or write '${{{name}:-default}}'",
                variable=name,
            )
        return environ[name], pos + 1
    if text.startswith(":-", pos):
        default, pos = _expand(text, pos + 2, environ, nested=True)
        value = environ.get(name, "")
        return (value if value else default), pos
    if pos >= len(text):
        raise EnvError(f"unterminated '${{' in {text!r}: add the closing '}}'")
    raise EnvError(f"invalid reference in {text!r}: only '${{NAME}}' and '${{NAME:-default}}' are supported")


def resolve_tree(data: Any, environ: Mapping[str, str]) -> tuple[Any, list[tuple[tuple[str | int, ...], str]]]:
    """Resolve every string value (not mapping keys) in a parsed YAML tree.

    Returns the new tree and a list of ``(path, message)`` for the values that failed; those
    values are left unresolved.
    """
    errors: list[tuple[tuple[str | int, ...], str]] = []

    def walk(node: Any, path: tuple[str | int, ...]) -> Any:
        if isinstance(node, str):
            if not has_reference(node):
                return node
            try:
                return resolve(node, environ)
            except EnvError as exc:
                errors.append((path, str(exc)))
                return node
        if isinstance(node, dict):
            return {k: walk(v, (*path, k)) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, (*path, i)) for i, v in enumerate(node)]
        return node

    return walk(data, ()), errors
