"""The distribution installs only packages under the ``cdx`` name (issue #14): ``pip install`` of
cdx cannot collide with another project's ``connectors`` or ``streams``."""

from __future__ import annotations

import tomllib
from pathlib import Path

from setuptools import find_packages

ROOT = Path(__file__).resolve().parents[2]


def test_only_cdx_packages_are_installed() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = config["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = find_packages(where=str(ROOT), include=include)
    assert packages and all(p == "cdx" or p.startswith("cdx.") for p in packages), packages
    for role in ("connectors", "streams", "infra"):
        assert f"cdx.{role}" in packages


def test_no_top_level_package_besides_cdx_tests_and_bench() -> None:
    tops = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    assert tops <= {"cdx", "tests", "bench"}, tops
