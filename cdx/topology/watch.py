"""Noticing that a topology file changed (development and single-host deployments reload from the file)."""

from __future__ import annotations

import hashlib
from pathlib import Path


class FileWatch:
    """``changed()`` is True once each time the file's content differs from what was last seen.

    A file that cannot be read counts as unchanged (an editor replacing it, a mount going away).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.digest = self._digest() or ""

    def _digest(self) -> str | None:
        try:
            return hashlib.sha256(self.path.read_bytes()).hexdigest()
        except OSError:
            return None

    def changed(self) -> bool:
        digest = self._digest()
        if digest is None or digest == self.digest:
            return False
        self.digest = digest
        return True
