"""What the rules need to know about a topology and one database: schemas, uploaded tables, parents' keys.

Names resolve to ``(schema, table)`` case-folded. SQLite has no schemas: cdx stores ``ext.X`` as
the table ``ext_X`` (``Dialect.physical_table``), so a SQLite name ``ext_X`` is read back as
schema ``ext``, table ``X`` when ``ext`` is a known (extension or protected) schema.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from cdx.topology.model import DATAAREAID, Direction, Subjob
from cdx.topology.root import Topology

Key = tuple[str, str]
DEFAULT_COUNTER = "REPLICATIONCOUNTERFROMORIGIN"


@dataclass(frozen=True)
class ParentKey:
    columns: tuple[str, ...]
    exact: bool
    """True when read from the parent table itself; False when from the topology's ``extension.key``
    (DATAAREAID implied, so it may or may not be part of the extension's key)."""
    per_company: bool | None = None
    """Whether the parent table has DATAAREAID (None: unknown, taken as per company)."""

    def matches(self, key: list[str]) -> bool:
        want = {c.casefold() for c in self.columns}
        have = {c.casefold() for c in key}
        if self.exact:
            return want == have
        dataareaid = DATAAREAID.casefold()
        return want - {dataareaid} == have - {dataareaid}


@dataclass(frozen=True)
class RuleContext:
    dialect: str
    allowed: frozenset[str]
    protected: frozenset[str]
    view_readable: frozenset[str]
    uploads: Mapping[Key, str] = field(default_factory=dict)
    """Extension tables the topology uploads -> their replication counter column."""
    parents: Mapping[Key, ParentKey | None] = field(default_factory=dict)
    """Extension tables of a parent table -> the parent's key (None: unknown here)."""

    def resolve(self, schema: str | None, name: str) -> tuple[str | None, str]:
        """``(schema, table)`` case-folded, reading SQLite's ``schema_table`` names back."""
        if schema is None and self.dialect == "sqlite":
            low = name.casefold()
            for s in sorted(self.allowed | self.protected, key=len, reverse=True):
                if low.startswith(s + "_") and len(low) > len(s) + 1:
                    return s, low[len(s) + 1:]
        return (schema.casefold() if schema else None), name.casefold()


def display(schema: str | None, name: str) -> str:
    """``schema.name`` as users write it (for messages)."""
    return f"{schema}.{name}" if schema else name


def _key(ref_schema: str | None, name: str) -> Key:
    return (ref_schema or "").casefold(), name.casefold()


def rule_context(topology: Topology, dialect: str,
                 parent_key: Callable[[Subjob], ParentKey | None] | None = None) -> RuleContext:
    """The rules' view of ``topology`` for a database of ``dialect``; ``parent_key`` reads a parent
    table's primary key from the database (default: the topology's ``extension.key`` only)."""
    ext = topology.extensions
    uploads: dict[Key, str] = {}
    parents: dict[Key, ParentKey | None] = {}
    for s in topology.subjobs:
        if s.extension is not None:
            target = s.extension.target
            parents[_key(target.schema, target.name)] = (parent_key(s) if parent_key else None) or (
                ParentKey(s.extension.key, exact=False) if s.extension.key else None)
        if s.direction is Direction.UPLOAD:
            counter = s.replication_counter or DEFAULT_COUNTER
            for ref in (s.target, s.extension.target if s.extension else None):
                if ref is not None and ext.is_extension_schema(ref.schema):
                    uploads[_key(ref.schema, ref.name)] = counter
    return RuleContext(dialect, frozenset(x.casefold() for x in ext.schemas), frozenset(ext.all_protected()),
                       frozenset(x.casefold() for x in ext.view_readable_schemas), uploads, parents)
