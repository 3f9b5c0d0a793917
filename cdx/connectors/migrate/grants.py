"""The grants a script's new extension objects receive (SQL Server and PostgreSQL; SQLite has none).

From CDX's documentation, for the roles named in ``extensions.roles``:

============  ==========================================  ===========================================
role          SQL Server                                  PostgreSQL
============  ==========================================  ===========================================
users,        tables: SELECT, INSERT, UPDATE, DELETE;     tables: SELECT, INSERT, UPDATE, DELETE;
deploy        views: SELECT; procedures: EXECUTE          views: SELECT; procedures/functions: EXECUTE
publishers    procedures: EXECUTE                         procedures/functions: EXECUTE
data_sync     replicated tables: SELECT, INSERT, UPDATE,  replicated tables: SELECT, INSERT, UPDATE,
              DELETE, ALTER                               DELETE, TRUNCATE (ALTER needs ownership)
============  ==========================================  ===========================================

PostgreSQL roles also get ``USAGE`` on the schema. "Replicated" means a subjob's channel or
extension table. The statements run after the script in its transaction; a missing role fails
the script (nothing is recorded), so create the roles first.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlglot import exp

from cdx.connectors.migrate.scripts import Script
from cdx.connectors.migrate.sqlparse import parse_one
from cdx.connectors.migrate.statements import leaves
from cdx.dialects import Dialect
from cdx.topology.extensions import ExtensionRoles
from cdx.topology.root import Topology


@dataclass(frozen=True)
class Created:
    kind: str
    """TABLE, VIEW, PROCEDURE or FUNCTION."""
    schema: str
    name: str


def created_objects(script: Script, allowed: set[str]) -> list[Created]:
    """Objects ``script`` creates in the extension schemas ``allowed`` (case-folded), in order."""
    out: list[Created] = []
    for leaf in leaves(script):
        tree = None if leaf.condition else parse_one(leaf.text, script.dialect)[0]
        if not isinstance(tree, exp.Create):
            continue
        kind = str(tree.args.get("kind") or "").upper()
        target = tree.this if isinstance(tree.this, exp.Table) else tree.this.find(exp.Table) if tree.this else None
        if kind not in ("TABLE", "VIEW", "PROCEDURE", "FUNCTION") or target is None or not target.db:
            continue
        if target.db.casefold() in allowed:
            schema, name = (_pg_name(target.args.get("db")), _pg_name(target.this)) \
                if script.dialect == "postgresql" else (target.db, target.name)
            found = Created(kind, schema, name)
            if found not in out:
                out.append(found)
    return out


def _pg_name(ident: object) -> str:
    """How PostgreSQL stores a name: as written when quoted, folded to lower case otherwise."""
    if isinstance(ident, exp.Identifier):
        return ident.name if ident.quoted else ident.name.lower()
    return str(ident)


def grant_statements(topology: Topology, script: Script, dialect: Dialect) -> list[str]:
    """The GRANT statements for the objects ``script`` creates (see module doc)."""
    roles = topology.extensions.roles
    if dialect.name not in ("sqlserver", "postgresql") or not roles.any():
        return []
    allowed = {s.casefold() for s in topology.extensions.schemas}
    replicated = _replicated(topology)
    out: list[str] = []
    objects = created_objects(script, allowed)
    if dialect.name == "postgresql":
        for schema in dict.fromkeys(o.schema for o in objects):
            out += [f"GRANT USAGE ON SCHEMA {dialect.quote_ident(schema)} TO {dialect.quote_ident(r)}"
                    for r in _all(roles)]
    for obj in objects:
        out += _for_object(obj, roles, (obj.schema.casefold(), obj.name.casefold()) in replicated, dialect)
    return out


def _all(roles: ExtensionRoles) -> list[str]:
    return [r for r in (roles.users, roles.deploy, roles.publishers, roles.data_sync) if r]


def _replicated(topology: Topology) -> set[tuple[str, str]]:
    return {((ref.schema or "").casefold(), ref.name.casefold()) for s in topology.subjobs
            for ref in (s.target, s.extension.target if s.extension else None) if ref is not None}


def _for_object(obj: Created, roles: ExtensionRoles, replicated: bool, dialect: Dialect) -> list[str]:
    name = f"{dialect.quote_ident(obj.schema)}.{dialect.quote_ident(obj.name)}"
    sqlserver = dialect.name == "sqlserver"
    on = name if sqlserver else f"{obj.kind} {name}" if obj.kind != "VIEW" else f"TABLE {name}"
    plan: list[tuple[str | None, str]] = []
    if obj.kind == "TABLE":
        plan += [(roles.users, "SELECT, INSERT, UPDATE, DELETE"), (roles.deploy, "SELECT, INSERT, UPDATE, DELETE")]
        if replicated:
            plan.append((roles.data_sync, "SELECT, INSERT, UPDATE, DELETE, " + ("ALTER" if sqlserver else "TRUNCATE")))
    elif obj.kind == "VIEW":
        plan += [(roles.users, "SELECT"), (roles.deploy, "SELECT")]
    elif obj.kind == "PROCEDURE" or not sqlserver:
        plan += [(roles.users, "EXECUTE"), (roles.publishers, "EXECUTE"), (roles.deploy, "EXECUTE")]
    return [f"GRANT {privileges} ON {on} TO {dialect.quote_ident(role)}" for role, privileges in plan if role]
