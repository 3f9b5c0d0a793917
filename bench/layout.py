"""The layout figures issue #14 asks for: lines of code now and at a base revision, the largest files, import
circles and upward imports.

    python -m bench.layout [--base a86d803]

Lines are physical lines of ``.py`` files of the installed package (``cdx/``; at a base revision that still
had the top-level ``connectors/``, ``streams/`` and ``infra/`` folders, those count too), read from git for
the base and from the work tree for now. Circles and upward imports use the same import graph as
``tests/architecture/test_layering.py`` (which keeps both at 0 in ``make test``). Code lines (SLOC) leave out
blank lines, comments and docstrings.
"""

from __future__ import annotations

import argparse
import ast
import io
import subprocess
import tokenize
from collections import Counter
from pathlib import Path

from tests.architecture import test_layering as layering

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIRS = ("cdx", "connectors", "streams", "infra")


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout


def sloc(source: str) -> int:
    """Lines holding code: not blank, not only a comment, not part of a module, class or function docstring."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return 0
    docs: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str):
                docs.update(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER}
    code: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type not in skip:
            code.update(n for n in range(tok.start[0], tok.end[0] + 1) if n not in docs)
    return len(code)


def sources_at(rev: str) -> dict[str, str]:
    """Text of every package ``.py`` file at ``rev`` (one ``git cat-file --batch`` for all of them)."""
    names = [n for n in _git("ls-tree", "-r", "--name-only", rev, "--", *PACKAGE_DIRS).split("\n")
             if n.endswith(".py")]
    batch = "".join(f"{rev}:{n}\n" for n in names).encode()
    out = subprocess.run(["git", "cat-file", "--batch"], cwd=ROOT, input=batch, check=True,
                         capture_output=True).stdout
    texts: dict[str, str] = {}
    pos = 0
    for name in names:
        header_end = out.index(b"\n", pos)
        size = int(out[pos:header_end].split()[2])
        body = out[header_end + 1:header_end + 1 + size]
        texts[name] = body.decode()
        pos = header_end + 1 + size + 1
    return texts


def sources_now() -> dict[str, str]:
    return {str(p.relative_to(ROOT)): p.read_text()
            for d in PACKAGE_DIRS if (ROOT / d).is_dir() for p in (ROOT / d).rglob("*.py")}


def by_area(counts: dict[str, int]) -> Counter[str]:
    """Lines per area: ``cdx/connectors/sink/x.py`` and ``connectors/sink/x.py`` are both ``connectors``."""
    areas: Counter[str] = Counter()
    for name, n in counts.items():
        parts = name.split("/")
        parts = parts[1:] if parts[0] == "cdx" and len(parts) > 2 else parts
        areas[parts[0] if len(parts) > 1 else "(top)"] += n
    return areas


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.layout")
    parser.add_argument("--base", default="a86d803", help="the revision to compare with")
    args = parser.parse_args(argv)
    base_src, now_src = sources_at(args.base), sources_now()
    base = {n: t.count("\n") for n, t in base_src.items()}
    now = {n: t.count("\n") for n, t in now_src.items()}
    print(f"lines of code in the package: {args.base} {sum(base.values()):,} -> now {sum(now.values()):,} "
          f"({sum(now.values()) - sum(base.values()):+,})")
    base_code, now_code = sum(map(sloc, base_src.values())), sum(map(sloc, now_src.values()))
    print(f"code lines (no blanks, comments, docstrings): {args.base} {base_code:,} -> now {now_code:,} "
          f"({now_code - base_code:+,})")
    old, new = by_area(base), by_area(now)
    for area in sorted(set(old) | set(new), key=lambda a: -new.get(a, 0)):
        print(f"  {area:<12} {old.get(area, 0):>7,} -> {new.get(area, 0):>7,}")
    for label, counts in ((args.base, base), ("now", now)):
        top = sorted(counts.items(), key=lambda kv: -kv[1])[:5]
        print(f"largest files at {label}: " + ", ".join(f"{n} {c}" for n, c in top))
    graph = layering._graph()
    upward = [(s, d) for s, ds in graph.items() for d in ds if layering._layer(d) > layering._layer(s)]
    print(f"import circles now: {len(layering._circles(graph))}; upward imports now: {len(upward)}")


if __name__ == "__main__":
    main()
