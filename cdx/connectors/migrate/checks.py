"""The extension rules and grants a topology asks for, as the runner's ``Rules``."""

from __future__ import annotations

import logging

from cdx.connectors.migrate.context import ParentKey, rule_context
from cdx.connectors.migrate.grants import grant_statements
from cdx.connectors.migrate.rules import check_script
from cdx.connectors.migrate.scripts import Script
from cdx.dialects import Connection, Dialect, key_columns
from cdx.errors import CdxError
from cdx.topology.model import DATAAREAID, Subjob
from cdx.topology.root import Topology

log = logging.getLogger("cdx.migrate")


class ExtensionRules:
    """Checks scripts against the rules (reading parents' keys from the database) and plans grants."""

    def __init__(self, topology: Topology) -> None:
        self.topology = topology

    def violations(self, script: Script, conn: Connection | None, dialect: Dialect) -> list[str]:
        def parent_key(subjob: Subjob) -> ParentKey | None:
            return _parent_key(conn, dialect, subjob) if conn is not None else None

        try:
            ctx = rule_context(self.topology, dialect.name, parent_key)
            return [str(v) for v in check_script(script, ctx)]
        except CdxError as e:
            return [str(e)]

    def grants(self, script: Script, dialect: Dialect) -> list[str]:
        return grant_statements(self.topology, script, dialect)


def _parent_key(conn: Connection, dialect: Dialect, subjob: Subjob) -> ParentKey | None:
    """The primary key of the subjob's channel table in this database, if the table is there."""
    target = subjob.target
    try:
        if not dialect.table_exists(conn, target.schema, target.name):
            return None
        columns = dialect.introspect_columns(conn, target.schema, target.name, require_primary_key=False)
    except CdxError as e:
        log.info("cannot read the key of %s: %s", target, e)
        return None
    key = key_columns(columns)
    per_company = any(c.name.upper() == DATAAREAID for c in columns)
    return ParentKey(tuple(key), exact=True, per_company=per_company) if key else None
