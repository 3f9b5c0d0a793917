"""The extension rules and grants a topology asks for, as the runner's ``Rules``."""

from __future__ import annotations

from cdx.dialects import Connection, Dialect
from cdx.topology.model import Topology
from connectors.migrate.scripts import Script


class ExtensionRules:
    def __init__(self, topology: Topology) -> None:
        self.topology = topology

    def violations(self, script: Script, conn: Connection | None, dialect: Dialect) -> list[str]:
        return []

    def grants(self, script: Script, dialect: Dialect) -> list[str]:
        return []
