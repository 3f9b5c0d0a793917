"""Customers: create, update and search, written to the HQ customer and party tables capture tracks.

A customer is a party row (``DIRPARTYTABLE``: name, language) plus a customer row in the caller's
legal entity (``CUSTTABLE``: account, group, currency, blocked). Both tables are the ones the
download subjobs read, so a new or changed customer reaches every channel of the groups that
receive the legal entity through the normal capture -> router -> sink path. Columns the service
does not know and that are NOT NULL get their type's zero value, as AX does. Account numbers
are ``<LEGAL ENTITY>-R<7 digits>`` from a sequence; RECIDs continue above the tables' highest.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from cdx.dialects import ColumnInfo, LogicalType
from cdx.realtime.auth import CALLER, Caller
from cdx.realtime.common import CODE_PATTERN, Body, Code, Currency, Text, hq_of, mutate, next_number, read
from cdx.realtime.config import RealtimeSettings
from cdx.realtime.db import Tx
from cdx.realtime.errors import ApiError, not_found
from cdx.realtime.idempotency import IdempotencyKey
from cdx.topology import TableRef

router = APIRouter(prefix="/v1/channels/{channel}/customers", tags=["customers"])
Account = Path(pattern=CODE_PATTERN, description="The customer account number (ACCOUNTNUM).")
_ZERO: dict[LogicalType, Any] = {LogicalType.STRING: "", LogicalType.INT32: 0, LogicalType.INT64: 0,
                                 LogicalType.DECIMAL: Decimal(0), LogicalType.FLOAT64: 0.0, LogicalType.BOOL: False,
                                 LogicalType.DATE: dt.date(1900, 1, 1), LogicalType.BYTES: b"",
                                 LogicalType.UUID: uuid.UUID(int=0)}


class NewCustomer(Body):
    name: Text
    customer_group: Code = "RETAIL"
    currency: Currency
    price_group: Code | None = None
    language: Literal["en-us", "de", "fr", "es", "it", "nl"] = "en-us"


class CustomerChange(Body):
    name: Text | None = None
    customer_group: Code | None = None
    price_group: Code | None = None
    blocked: Literal[0, 1, 2] | None = None


def _columns(tx: Tx, table: TableRef, hq_cache: dict[Any, Any]) -> dict[str, ColumnInfo]:
    """The table's columns by upper-case name (cached per process)."""
    key = ("columns", str(table))
    if key not in hq_cache:
        cols = tx.d.introspect_columns(tx.conn, table.schema, table.name, require_primary_key=False)
        hq_cache[key] = {c.name.upper(): c for c in cols}
    columns: dict[str, ColumnInfo] = hq_cache[key]
    return columns


def _row(columns: dict[str, ColumnInfo], known: dict[str, Any]) -> dict[str, Any]:
    """Every NOT NULL column (zero value unless ``known``) plus the known ones the table has."""
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    row = {c.name: _ZERO.get(c.logical_type, now) for c in columns.values() if not c.nullable}
    row.update({columns[k].name: v for k, v in known.items() if k in columns})
    return row


def _audit(caller: Caller, created: bool) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    out = {"MODIFIEDDATETIME": now, "MODIFIEDBY": caller.id[:20]}
    return {**out, "CREATEDDATETIME": now, "CREATEDBY": caller.id[:20]} if created else out


class CustomerTables:
    """The customer and party tables of one request, with their real column names."""

    def __init__(self, tx: Tx, settings: RealtimeSettings, cache: dict[Any, Any]) -> None:
        self.tx = tx
        self.cust_ref, self.party_ref = settings.customer_table, settings.party_table
        self.cust = _columns(tx, self.cust_ref, cache)
        self.party = _columns(tx, self.party_ref, cache)
        self.cust_sql = tx.d.qualified(self.cust_ref.schema, self.cust_ref.name)
        self.party_sql = tx.d.qualified(self.party_ref.schema, self.party_ref.name)

    def c(self, name: str) -> str:
        return self.tx.q(self.cust[name].name)

    def p(self, name: str) -> str:
        return self.tx.q(self.party[name].name)

    def select(self) -> str:
        c, p = self.c, self.p
        return (f"SELECT c.{c('ACCOUNTNUM')} AS a, c.{c('DATAAREAID')} AS le, p.{p('NAME')} AS n,"
                f" c.{c('CUSTGROUP')} AS g, c.{c('CURRENCY')} AS cur, c.{c('PRICEGROUP')} AS pg,"
                f" c.{c('BLOCKED')} AS b, c.{c('PARTY')} AS party, c.{c('RECID')} AS recid"
                f" FROM {self.cust_sql} c LEFT JOIN {self.party_sql} p ON p.{p('RECID')} = c.{c('PARTY')}")

    def next_recid(self) -> int:
        tx = self.tx
        highest = tx.one(f"SELECT MAX({self.p('RECID')}) AS m FROM {self.party_sql}")
        highest2 = tx.one(f"SELECT MAX({self.c('RECID')}) AS m FROM {self.cust_sql}")
        floor = max(int((highest or {}).get("m") or 0), int((highest2 or {}).get("m") or 0))
        return next_number(tx, "RECID", floor)


def _view(row: dict[str, Any]) -> dict[str, Any]:
    return {"account": row["a"], "legal_entity": row["le"], "name": row["n"], "customer_group": row["g"],
            "currency": row["cur"], "price_group": row["pg"], "blocked": int(row["b"]),
            "party_recid": int(row["party"]), "recid": int(row["recid"])}


def _one(t: CustomerTables, caller: Caller, account: str) -> dict[str, Any]:
    row = t.tx.one(f"{t.select()} WHERE c.{t.c('DATAAREAID')} = {t.tx.p} AND c.{t.c('ACCOUNTNUM')} = {t.tx.p}",
                   [caller.legal_entity, account])
    if row is None:
        raise not_found("customer")
    return _view(row)


def _tables(request: Request, tx: Tx) -> CustomerTables:
    return CustomerTables(tx, request.app.state.settings, hq_of(request).catalog)


def _create(t: CustomerTables, caller: Caller, body: NewCustomer) -> dict[str, Any]:
    tx = t.tx
    party_recid, cust_recid = t.next_recid(), t.next_recid()
    seq = next_number(tx, f"CUSTACCOUNT-{caller.legal_entity.upper()}")
    account = f"{caller.legal_entity.upper()}-R{seq:07d}"
    tx.insert(t.party_sql, _row(t.party, {
        "RECID": party_recid, "PARTYNUMBER": f"R{party_recid}", "NAME": body.name,
        "NAMEALIAS": body.name.split()[-1][:20], "INSTANCERELATIONTYPE": 2978, "LANGUAGEID": body.language,
        **_audit(caller, True)}))
    cust = _row(t.cust, {"DATAAREAID": caller.legal_entity, "ACCOUNTNUM": account, "PARTY": party_recid,
                         "CUSTGROUP": body.customer_group, "CURRENCY": body.currency, "PRICEGROUP": body.price_group,
                         "BLOCKED": 0, "RECID": cust_recid, **_audit(caller, True)})
    if not tx.insert_if_absent(t.cust_sql, cust, [t.cust["DATAAREAID"].name, t.cust["ACCOUNTNUM"].name]):
        raise ApiError(409, "retry", f"account {account} exists already; retry with a new Idempotency-Key")
    return _one(t, caller, account)


@router.post("", status_code=201, summary="Create a customer")
def create(request: Request, body: NewCustomer, caller: Caller = CALLER, key: str = IdempotencyKey) -> Response:
    return mutate(request, caller, key, body, lambda tx: (201, _create(_tables(request, tx), caller, body)))


def _update(t: CustomerTables, caller: Caller, account: str, body: CustomerChange) -> dict[str, Any]:
    current = _one(t, caller, account)
    tx = t.tx
    changes = {"CUSTGROUP": body.customer_group, "PRICEGROUP": body.price_group, "BLOCKED": body.blocked}
    values = {k: v for k, v in changes.items() if v is not None and k in t.cust} | _audit(caller, False)
    sets = ", ".join(f"{t.c(k)} = {tx.p}" for k in values if k in t.cust)
    tx.execute(f"UPDATE {t.cust_sql} SET {sets} WHERE {t.c('DATAAREAID')} = {tx.p} AND {t.c('ACCOUNTNUM')} = {tx.p}",
               [v for k, v in values.items() if k in t.cust] + [caller.legal_entity, account])
    if body.name is not None:
        party = {"NAME": body.name, "NAMEALIAS": body.name.split()[-1][:20], **_audit(caller, False)}
        party = {k: v for k, v in party.items() if k in t.party}
        tx.execute(f"UPDATE {t.party_sql} SET {', '.join(f'{t.p(k)} = {tx.p}' for k in party)}"
                   f" WHERE {t.p('RECID')} = {tx.p}", [*party.values(), current["party_recid"]])
    return _one(t, caller, account)


@router.patch("/{account}", summary="Update a customer")
def update(request: Request, body: CustomerChange, account: str = Account, caller: Caller = CALLER,
           key: str = IdempotencyKey) -> Response:
    return mutate(request, caller, key, body, lambda tx: (200, _update(_tables(request, tx), caller, account, body)))


@router.get("/{account}", summary="One customer")
def get(request: Request, account: str = Account, caller: Caller = CALLER) -> dict[str, Any]:
    return read(request, lambda tx: _one(_tables(request, tx), caller, account))


@router.get("", summary="Search customers by name (prefix, case-insensitive)")
def search(request: Request, name: str = Query(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$"),
           limit: int = Query(20, ge=1, le=100), caller: Caller = CALLER) -> dict[str, Any]:
    pattern = name.lower().replace("!", "!!").replace("%", "!%").replace("_", "!_") + "%"
    with hq_of(request).transaction(write=False) as tx:
        t = _tables(request, tx)
        top, tail = tx.caps.top(limit)
        sql = t.select().replace("SELECT ", f"SELECT {top}", 1)
        rows = tx.all(f"{sql} WHERE c.{t.c('DATAAREAID')} = {tx.p} AND LOWER(p.{t.p('NAME')}) LIKE {tx.p} ESCAPE '!'"
                      f" ORDER BY c.{t.c('ACCOUNTNUM')}{tail}", [caller.legal_entity, pattern])
    return {"customers": [_view(r) for r in rows]}
