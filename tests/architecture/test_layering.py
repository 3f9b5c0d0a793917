"""The layering rule of the README, checked on the source: imports point one way and no module
imports itself back through others.

composition (``cdx.cli``, ``cdx.demo``) -> roles (connectors, streams, the Real-time Service,
deployment plans, local infrastructure) -> kernel (topology, codec, dialects, kafka, ...).
Every import counts: module level, inside functions, under ``TYPE_CHECKING``, relative, and
``importlib.import_module`` with a literal name.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from pathlib import Path

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


def _imported(tree: ast.AST, module: str = "", package: bool = False) -> Iterator[tuple[str, int]]:
    """Every name ``module`` imports, with its line: ``import``/``from`` statements wherever they stand
    (module level, inside functions, under ``TYPE_CHECKING``), relative ones resolved against ``module``
    (``package``: it is an ``__init__``), and ``importlib.import_module("...")`` with a literal name."""
    base = module.split(".") if package else module.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parent = ".".join(base[:len(base) - node.level + 1])
                head = f"{parent}.{node.module}" if node.module else parent
            else:
                head = node.module or ""
            yield from ((f"{head}.{alias.name}", node.lineno) for alias in node.names)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute | ast.Name)
              and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            yield node.args[0].value, node.lineno


@functools.cache
def _edges() -> dict[str, dict[str, list[str]]]:
    """``source -> target -> ["path:line", ...]`` for every import of one cdx module by another. An
    explicit import of a module's own package (``from cdx.topology import X`` in ``cdx.topology.loader``)
    counts: it runs the package's ``__init__``, which may import the module back."""
    modules = _modules()

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    edges: dict[str, dict[str, list[str]]] = {}
    for name, path in modules.items():
        out = edges.setdefault(name, {})
        tree = ast.parse(path.read_text(), str(path))
        for imported, line in _imported(tree, name, path.name == "__init__.py"):
            target = resolve(imported)
            where = f"{path.relative_to(SRC).as_posix()}:{line}"
            if target and target != name and where not in out.get(target, ()):
                out.setdefault(target, []).append(where)
    return edges


@functools.cache
def _graph() -> dict[str, set[str]]:
    return {name: set(targets) for name, targets in _edges().items()}


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:
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
    return circles


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


def test_no_import_circles() -> None:
    """No module imports itself back through others, counting every import the graph holds (inside
    functions and under ``TYPE_CHECKING`` too): a circle is broken by moving the shared piece down, by
    a protocol or a callable handed in, never by hiding an import inside a function."""
    edges = _edges()
    circles = _circles(_graph())
    report = []
    for circle in circles:
        report.append(" <-> ".join(circle))
        report += [f"    {src} -> {dst}: {', '.join(edges[src][dst])}"
                   for src in circle for dst in sorted(edges[src]) if dst in circle]
    assert circles == [], "import circles:\n" + "\n".join(report)


_SAMPLE = """
from __future__ import annotations
import importlib
from typing import TYPE_CHECKING
from . import sibling
from ..up import thing
if TYPE_CHECKING:
    from cdx.b import B
def f():
    from cdx.c import C
    import cdx.d
    return importlib.import_module("cdx.e")
"""


def test_the_graph_counts_every_kind_of_import() -> None:
    """Function-level, ``TYPE_CHECKING``, relative and ``import_module`` imports are all edges."""
    names = {n for n, _ in _imported(ast.parse(_SAMPLE), "cdx.pkg.mod")}
    assert {"cdx.pkg.sibling", "cdx.up.thing", "cdx.b.B", "cdx.c.C", "cdx.d", "cdx.e"} <= names
    assert "cdx.pkg.sub.x" in {n for n, _ in _imported(ast.parse("from .sub import x"), "cdx.pkg", package=True)}


def test_circles_are_found() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _circles(graph) == [["a", "b", "c"]]
    assert _circles({"a": {"b"}, "b": set()}) == []
