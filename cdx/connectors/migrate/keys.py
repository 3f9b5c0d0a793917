"""Deployed extension tables against their parents: the extension's primary key must be the parent's.

``cdx topology validate --databases`` runs this on every channel and offline-register database:
for each subjob with an extension table, when both tables exist there, their primary keys are
compared (DATAAREAID included). Read-only; an unreachable database is reported, not fatal.
"""

from __future__ import annotations

from dataclasses import dataclass

from cdx.connectors.migrate.fleet import targets
from cdx.dialects import get_dialect, key_columns
from cdx.errors import CdxError
from cdx.topology.root import Topology


@dataclass(frozen=True)
class KeyProblem:
    owner_id: str
    message: str

    def __str__(self) -> str:
        return f"{self.owner_id}: {self.message}"


def check_deployed_keys(topology: Topology) -> tuple[list[KeyProblem], list[str]]:
    """``(problems, unreachable)``: key mismatches per database, and databases that could not be read."""
    pairs = [(s.target, s.extension.target) for s in topology.subjobs if s.extension is not None]
    problems: list[KeyProblem] = []
    unreachable: list[str] = []
    if not pairs:
        return problems, unreachable
    for target in targets(topology):
        dialect = get_dialect(target.dialect)
        try:
            conn = dialect.connect(target.dsn)
        except Exception as e:
            unreachable.append(f"{target.owner_id} ({target.redacted}): {str(e).strip().splitlines()[0]}")
            continue
        try:
            for parent, ext in pairs:
                found = []
                for ref in (parent, ext):
                    if not dialect.table_exists(conn, ref.schema, ref.name):
                        break
                    found.append(key_columns(dialect.introspect_columns(conn, ref.schema, ref.name,
                                                                        require_primary_key=False)))
                if len(found) == 2 and {c.casefold() for c in found[0]} != {c.casefold() for c in found[1]}:
                    problems.append(KeyProblem(target.owner_id, (
                        f"extension table {ext} has primary key ({', '.join(found[1]) or 'none'}), its parent {parent}"
                        f" ({', '.join(found[0]) or 'none'}): an extension table must have its parent's key")))
        except CdxError as e:
            unreachable.append(f"{target.owner_id}: {e}")
        finally:
            conn.rollback()
            conn.close()
    return problems, unreachable
