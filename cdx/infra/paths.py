"""Where the launchers keep their state (jars, data directories, logs, pid files).

The state directory is ``$CDX_STATE_DIR`` when set, else ``.cdx/`` at the root of a
source checkout (ignored by git), else ``~/.cache/cdx`` for an installed package.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def state_dir() -> Path:
    env = os.environ.get("CDX_STATE_DIR")
    if env:
        path = Path(env).expanduser().resolve()
    elif (REPO_ROOT / "pyproject.toml").exists():
        path = REPO_ROOT / ".cdx"
    else:
        path = Path.home() / ".cache" / "cdx"
    path.mkdir(parents=True, exist_ok=True)
    return path
