"""Code rules of the README that a reviewer should not have to check by eye."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.architecture.test_layering import _modules


def _swallows(handler: ast.ExceptHandler) -> bool:
    broad = handler.type is None or (isinstance(handler.type, ast.Name)
                                     and handler.type.id in ("Exception", "BaseException"))
    return broad and all(isinstance(stmt, ast.Pass) for stmt in handler.body)


def test_no_exception_is_swallowed_silently() -> None:
    """``except Exception: pass`` hides faults; best-effort clean-up goes through
    :func:`cdx.cleanup.quietly`, which logs what failed."""
    found = []
    for path in sorted(set(_modules().values())):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ExceptHandler) and _swallows(node):
                found.append(f"{Path(path).as_posix()}:{node.lineno}")
    assert found == [], "silent broad excepts:\n" + "\n".join(found)
