"""The layering rule of the README, checked on the source: imports point one way and no module
imports itself back through others.

composition (``cdx.cli``, ``cdx.demo``) -> roles (connectors, streams, the Real-time Service,
deployment plans, local infrastructure) -> kernel (topology, codec, dialects, kafka, ...).
Every import counts: module level, inside functions and under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from pathlib import Path

import pytest

import cdx

SRC = Path(cdx.__file__).resolve().parent.parent
TOP_LEVEL = ("cdx",)

COMPOSITION = ("cli", "demo")
ROLES = ("connectors", "streams", "realtime", "deploy", "infra")


def _canonical(name: str) -> str:
    """``cdx.connectors.sink`` and ``cdx.connectors.sink`` are the same module for the rule."""
    head = name.split(".", 1)[0]
    return name if head == "cdx" else f"cdx.{name}"


def _modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for top in TOP_LEVEL:
        root = SRC / top
        if not (root / "__init__.py").exists():
            continue
        for path in root.rglob("*.py"):
            parts = list(path.relative_to(SRC).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _imported(tree: ast.AST) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


@functools.cache
def _graph() -> dict[str, set[str]]:
    modules = _modules()

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = {resolve(n) for n in _imported(ast.parse(path.read_text(), str(path)))}
        graph[name] = {t for t in targets if t and t != name and not name.startswith(t + ".")}
    return graph


def _layer(module: str) -> int:
    parts = _canonical(module).split(".")
    sub = parts[1] if len(parts) > 1 else ""
    if sub in COMPOSITION:
        return 2
    return 1 if sub in ROLES else 0


def test_every_import_points_down_or_sideways_within_its_layer() -> None:
    upward = sorted(f"{src} -> {dst}" for src, dsts in _graph().items() for dst in dsts
                    if _layer(dst) > _layer(src))
    assert upward == [], "imports that point up a layer (kernel < roles < composition):\n" + "\n".join(upward)


def test_roles_do_not_import_each_other_across_families() -> None:
    """A connector never imports the router or the Real-time Service, and so on: roles meet only in
    the kernel (topics, codec, topology) and in the composition layer."""
    def family(m: str) -> str:
        return _canonical(m).split(".")[1]

    crossing = sorted(f"{src} -> {dst}" for src, dsts in _graph().items() for dst in dsts
                      if _layer(src) == _layer(dst) == 1 and family(src) != family(dst))
    assert crossing == [], "\n".join(crossing)


@pytest.mark.xfail(reason="issue #14: circles through function-level imports remain (reload modules, the router's "
                          "activation/engine, topology operations/validate); this test lists them", strict=False)
def test_no_import_circles() -> None:
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert circles == [], "import circles:\n" + "\n".join(" <-> ".join(c) for c in circles)
