"""`cdx demo` runs the whole exchange (separate processes, real broker, SQLite) and verifies it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def test_demo_runs_to_completion_and_verifies(kafka: str) -> None:
    env = dict(os.environ)  # the demo reuses the broker the launcher started for the test session
    result = subprocess.run(
        [sys.executable, "-m", "cdx.cli.main", "demo", "--scale", "0.2", "--duration", "8", "--hq-rate", "50"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    assert "demo verified" in out
    assert "0 missing, 0 duplicates" in out
    assert "identical" in out and "Traceback" not in out
    assert "real-time service: gift card balances: as expected" in out
    assert "a second return in store-0001 got 409 (as expected)" in out
