"""Rules on table definitions (``CREATE TABLE`` and ``ALTER TABLE ... ADD`` in an extension schema).

- ``not-null-default``: every column is declared NOT NULL; every column also has a DEFAULT,
  except key columns, identity/serial columns, row versions, computed columns and DATAAREAID
  (values the writer always supplies). Added columns always need both.
- ``upload-table``: a table the topology uploads has its replication counter
  (``REPLICATIONCOUNTERFROMORIGIN``) as an identity column (SQLite: an integer column, which the
  writer fills), which is not the table's only unique key, plus ``DATAAREAID`` (unless its parent
  table, read from the database, has none: the data is not per company) and, on SQL Server,
  ``[ROWVERSION] [timestamp]``.
- ``parent-key``: an extension table of a parent has the parent's primary key (read from the
  database when the parent exists there, else the topology's ``extension.key``); on SQL Server
  that key is also the clustered index.
"""

from __future__ import annotations

from collections.abc import Iterator

from sqlglot import exp

from cdx.connectors.migrate.context import DEFAULT_COUNTER, RuleContext, display
from cdx.connectors.migrate.statements import Parsed
from cdx.topology.model import DATAAREAID

Found = tuple[Parsed, str, str]
_SERIALS = {exp.DataType.Type.SERIAL, exp.DataType.Type.BIGSERIAL, exp.DataType.Type.SMALLSERIAL}
_INTEGERS = {exp.DataType.Type.INT, exp.DataType.Type.BIGINT, exp.DataType.Type.SMALLINT, exp.DataType.Type.TINYINT}


def check_tables(parsed: list[Parsed], ctx: RuleContext) -> Iterator[Found]:
    clustered = _clustered_indexes(parsed, ctx)
    for p in parsed:
        tree = p.tree
        if isinstance(tree, exp.Create) and str(tree.args.get("kind", "")).upper() == "TABLE" \
                and isinstance(tree.this, exp.Schema) and isinstance(tree.this.this, exp.Table):
            table = tree.this.this
            key = ctx.resolve(table.db or None, table.name)
            if key[0] in ctx.allowed:
                yield from _create(p, tree.this, (key[0], key[1]), ctx, clustered, display(table.db, table.name))
        elif isinstance(tree, exp.Alter) and isinstance(tree.this, exp.Table):
            schema, _ = ctx.resolve(tree.this.db or None, tree.this.name)
            if schema in ctx.allowed:
                for action in tree.args.get("actions") or ():
                    if isinstance(action, exp.ColumnDef):
                        yield from _added(p, action)


def _constraints(col: exp.ColumnDef) -> list[exp.Expression]:
    return [c.args["kind"] for c in col.args.get("constraints") or () if c.args.get("kind") is not None]


def _has(col: exp.ColumnDef, kind: type[exp.Expression]) -> bool:
    return any(isinstance(k, kind) for k in _constraints(col))


def _not_null(col: exp.ColumnDef) -> bool:
    return any(isinstance(k, exp.NotNullColumnConstraint) and not k.args.get("allow_null") for k in _constraints(col))


def _identity(col: exp.ColumnDef) -> bool:
    dtype = col.args.get("kind")
    return _has(col, exp.GeneratedAsIdentityColumnConstraint) or (
        isinstance(dtype, exp.DataType) and dtype.this in _SERIALS)


def _exempt_from_default(col: exp.ColumnDef, counter: str | None) -> bool:
    """Columns the writer or the database always fills: identity, computed, row version, DATAAREAID and
    the replication counter (an identity, or on SQLite filled by the writer)."""
    dtype = col.args.get("kind")
    name = col.name.casefold()
    return (_identity(col) or _has(col, exp.ComputedColumnConstraint) or name == DATAAREAID.casefold()
            or name in (DEFAULT_COUNTER.casefold(), (counter or "").casefold())
            or (isinstance(dtype, exp.DataType) and dtype.this is exp.DataType.Type.ROWVERSION))


def _columns(schema: exp.Schema) -> list[exp.ColumnDef]:
    return [c for c in schema.expressions if isinstance(c, exp.ColumnDef)]


def _names(node: exp.Expression | list[exp.Expression] | None) -> list[str]:
    if node is None:
        return []
    items = node if isinstance(node, list) else [node]
    return [ident.name for item in items for ident in item.find_all(exp.Identifier)]


def _keys(schema: exp.Schema) -> tuple[list[str], bool, list[list[str]]]:
    """``(primary key columns, primary key declared NONCLUSTERED, other unique keys)``."""
    primary: list[str] = []
    nonclustered = False
    unique: list[list[str]] = []
    for c in _columns(schema):
        if _has(c, exp.PrimaryKeyColumnConstraint):
            primary.append(c.name)
            nonclustered |= _has(c, exp.NonClusteredColumnConstraint)
        if _has(c, exp.UniqueColumnConstraint):
            unique.append([c.name])
    for item in schema.expressions:
        if isinstance(item, exp.PrimaryKey):
            primary = _names(item.expressions)
        elif isinstance(item, exp.UniqueColumnConstraint):
            unique.append(_names(item.this))
        elif isinstance(item, exp.Constraint):
            kinds = item.expressions
            cols = [_names(k.this) for k in kinds if isinstance(k, exp.ClusteredColumnConstraint |
                                                                exp.NonClusteredColumnConstraint |
                                                                exp.UniqueColumnConstraint)]
            columns = next((c for c in cols if c), [])
            if any(isinstance(k, exp.PrimaryKeyColumnConstraint) for k in kinds):
                primary = columns
                nonclustered = any(isinstance(k, exp.NonClusteredColumnConstraint) for k in kinds)
            elif any(isinstance(k, exp.UniqueColumnConstraint) for k in kinds):
                unique.append(columns)
    return primary, nonclustered, unique


def _create(p: Parsed, schema: exp.Schema, key: tuple[str, str], ctx: RuleContext,
            clustered: dict[tuple[str | None, str], list[set[str]]], table: str) -> Iterator[Found]:
    primary, nonclustered, unique = _keys(schema)
    in_key = {c.casefold() for c in primary}
    counter = ctx.uploads.get(key)
    for col in _columns(schema):
        if not _not_null(col) and not _identity(col) and not _has(col, exp.ComputedColumnConstraint):
            yield p, "not-null-default", f"column {col.name} of {table} must be NOT NULL (every extension column is)"
        elif col.name.casefold() not in in_key and not _exempt_from_default(col, counter) and not _has(
                col, exp.DefaultColumnConstraint):
            yield p, "not-null-default", f"column {col.name} of {table} needs a DEFAULT (every extension column is" \
                                         " NOT NULL with a default)"
    if counter is not None:
        yield from _upload(p, schema, key, table, counter, primary, unique, ctx)
    if key in ctx.parents:
        parent = ctx.parents[key]
        if parent is not None and not parent.matches(primary):
            yield p, "parent-key", (f"{table} extends a parent table whose primary key is ({', '.join(parent.columns)})"
                                    f"; its primary key is ({', '.join(primary) or 'none'}): give it the same key")
        elif ctx.dialect == "sqlserver" and primary and nonclustered and {c.casefold() for c in primary} not in \
                clustered.get(key, []):
            yield p, "parent-key", f"{table}: the primary key of an extension table must be its clustered index" \
                                   " (as in the parent table): drop NONCLUSTERED"


def _upload(p: Parsed, schema: exp.Schema, key: tuple[str, str], table: str, counter: str, primary: list[str],
            unique: list[list[str]], ctx: RuleContext) -> Iterator[Found]:
    cols = {c.name.casefold(): c for c in _columns(schema)}
    col = cols.get(counter.casefold())
    if col is None:
        yield p, "upload-table", (f"{table} is uploaded to HQ, so it needs the identity column {counter}"
                                  f" ([{counter}] [int] IDENTITY(1,1) NOT NULL)")
    elif ctx.dialect != "sqlite" and not _identity(col):
        yield p, "upload-table", f"{table}.{counter} must be an identity column (IDENTITY(1,1) / GENERATED AS IDENTITY)"
    elif ctx.dialect == "sqlite" and not (isinstance(col.args.get("kind"), exp.DataType)
                                          and col.args["kind"].this in _INTEGERS):
        yield p, "upload-table", f"{table}.{counter} must be an integer column"
    keys = [primary, *unique]
    if not any(k and {c.casefold() for c in k} != {counter.casefold()} for k in keys):
        yield p, "upload-table", (f"{counter} must not be the only unique key of {table}: give it a primary key of"
                                  " its own columns (the parent's key)")
    parent = ctx.parents.get(key)
    if DATAAREAID.casefold() not in cols and (parent is None or parent.per_company is not False):
        yield p, "upload-table", (f"{table} is uploaded to HQ and its data is per company, so it needs"
                                  " [DATAAREAID] [nvarchar](4) NOT NULL")
    if ctx.dialect == "sqlserver" and not any(
            isinstance(c.args.get("kind"), exp.DataType) and c.args["kind"].this is exp.DataType.Type.ROWVERSION
            for c in cols.values()):
        yield p, "upload-table", f"{table} is uploaded to HQ, so it needs [ROWVERSION] [timestamp] NOT NULL"


def _added(p: Parsed, col: exp.ColumnDef) -> Iterator[Found]:
    if _identity(col) or _has(col, exp.ComputedColumnConstraint):
        return
    dtype = col.args.get("kind")
    if isinstance(dtype, exp.DataType) and dtype.this is exp.DataType.Type.ROWVERSION:
        return
    if not _not_null(col) or not _has(col, exp.DefaultColumnConstraint):
        yield p, "not-null-default", (f"added column {col.name} must be NOT NULL with a DEFAULT (existing rows"
                                      " get the default; a NULL breaks the commerce runtime)")


def _clustered_indexes(parsed: list[Parsed], ctx: RuleContext) -> dict[tuple[str | None, str], list[set[str]]]:
    out: dict[tuple[str | None, str], list[set[str]]] = {}
    for p in parsed:
        tree = p.tree
        if isinstance(tree, exp.Create) and "CLUSTERED" in str(tree.args.get("kind", "")).upper() and \
                "NONCLUSTERED" not in str(tree.args.get("kind", "")).upper():
            index = tree.this
            table = index.args.get("table") if index is not None else None
            params = index.args.get("params") if index is not None else None
            if isinstance(table, exp.Table) and params is not None:
                cols = {n.casefold() for n in _names(params.args.get("columns"))}
                out.setdefault(ctx.resolve(table.db or None, table.name), []).append(cols)
    return out
