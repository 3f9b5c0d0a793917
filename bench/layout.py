"""The layout figures issue #14 asks for: lines of code now and at a base revision, the largest files, import
circles and upward imports.

    python -m bench.layout [--base a86d803]

Lines are physical lines of ``.py`` files of the installed package (``cdx/``; at a base revision that still
had the top-level ``connectors/``, ``streams/`` and ``infra/`` folders, those count too), read from git for
the base and from the work tree for now. Circles and upward imports use the same import graph as
``tests/architecture/test_layering.py`` (which keeps both at 0 in ``make test``).
"""

from __future__ import annotations

import argparse
import subprocess
from collections import Counter
from pathlib import Path

from tests.architecture import test_layering as layering

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIRS = ("cdx", "connectors", "streams", "infra")


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout


def lines_at(rev: str) -> dict[str, int]:
    """Lines per package ``.py`` file at ``rev`` (one ``git cat-file --batch`` for all of them)."""
    names = [n for n in _git("ls-tree", "-r", "--name-only", rev, "--", *PACKAGE_DIRS).split("\n")
             if n.endswith(".py")]
    batch = "".join(f"{rev}:{n}\n" for n in names).encode()
    out = subprocess.run(["git", "cat-file", "--batch"], cwd=ROOT, input=batch, check=True,
                         capture_output=True).stdout
    counts: dict[str, int] = {}
    pos = 0
    for name in names:
        header_end = out.index(b"\n", pos)
        size = int(out[pos:header_end].split()[2])
        body = out[header_end + 1:header_end + 1 + size]
        counts[name] = body.count(b"\n")
        pos = header_end + 1 + size + 1
    return counts


def lines_now() -> dict[str, int]:
    return {str(p.relative_to(ROOT)): p.read_bytes().count(b"\n")
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
    base, now = lines_at(args.base), lines_now()
    print(f"lines of code in the package: {args.base} {sum(base.values()):,} -> now {sum(now.values()):,} "
          f"({sum(now.values()) - sum(base.values()):+,})")
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
