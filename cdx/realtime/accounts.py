"""Balance accounts (gift cards, loyalty cards, credit memos): issue, credit, debit, void, read.

Every balance change is one conditional ``UPDATE`` (``... WHERE BALANCE >= amount AND STATUS =
'active'``): the database applies concurrent changes one after another on the row, so no
interleaving overspends, and the change plus its ledger row (``rts.BALANCETRANS``) commit together.
Accounts belong to one legal entity; another entity's account reads as not found.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cdx.realtime.auth import Caller
from cdx.realtime.common import random_number
from cdx.realtime.db import Tx
from cdx.realtime.errors import ApiError, conflict, not_found
from cdx.realtime.idempotency import now_text

ACTIVE, VOID = "active", "void"


@dataclass(frozen=True)
class AccountKind:
    """One family of accounts: its table, its name in messages, how its units look in JSON."""

    table: str
    kind: str
    label: str
    show: Callable[[int], Any]


def _view(kind: AccountKind, row: dict[str, Any]) -> dict[str, Any]:
    return {"number": row["NUMBER"], "legal_entity": row["DATAAREAID"], "currency": row["CURRENCY"],
            "balance": kind.show(int(row["BALANCE"])), "status": row["STATUS"],
            "customer_account": row["CUSTACCOUNT"], "issued_by": row["ISSUEDBY"], "created_at": row["CREATEDAT"]}


_COLUMNS = ("NUMBER", "DATAAREAID", "CURRENCY", "BALANCE", "STATUS", "CUSTACCOUNT", "ISSUEDBY", "CREATEDAT")


def _row(tx: Tx, kind: AccountKind, caller: Caller, number: str, lock: bool = False) -> dict[str, Any]:
    table, suffix = tx.caps.locked(tx.t(kind.table)) if lock else (tx.t(kind.table), "")
    row = tx.one(f"SELECT {tx.cols(_COLUMNS)} FROM {table} WHERE {tx.where(['NUMBER', 'DATAAREAID'])}{suffix}",
                 [number, caller.legal_entity])
    if row is None:
        raise not_found(kind.label)
    return row


def read(tx: Tx, kind: AccountKind, caller: Caller, number: str) -> dict[str, Any]:
    return _view(kind, _row(tx, kind, caller, number))


def find_by_customer(tx: Tx, kind: AccountKind, caller: Caller, customer: str) -> list[dict[str, Any]]:
    rows = tx.all(f"SELECT {tx.cols(_COLUMNS)} FROM {tx.t(kind.table)}"
                  f" WHERE {tx.where(['CUSTACCOUNT', 'DATAAREAID'])} ORDER BY {tx.q('NUMBER')}",
                  [customer, caller.legal_entity])
    return [_view(kind, r) for r in rows]


def _ledger(tx: Tx, kind: AccountKind, caller: Caller, number: str, operation: str, units: int, after: int,
            key: str) -> dict[str, Any]:
    entry = {"ENTRYID": uuid.uuid4().hex, "KIND": kind.kind, "NUMBER": number, "DATAAREAID": caller.legal_entity,
             "OPERATION": operation, "AMOUNT": units, "BALANCEAFTER": after, "PRINCIPAL": caller.id,
             "CHANNEL": caller.channel, "IDEMKEY": key, "CREATEDAT": now_text()}
    tx.insert(tx.t("BALANCETRANS"), entry, deferred=True)
    return {"entry_id": entry["ENTRYID"], "operation": operation, "amount": kind.show(units),
            "balance_after": kind.show(after), "at": entry["CREATEDAT"]}


def issue(tx: Tx, kind: AccountKind, caller: Caller, key: str, *, number: str | None, units: int, currency: str,
          customer: str | None) -> dict[str, Any]:
    """Create an active account holding ``units``; 409 if ``number`` is taken. ``None``: a random number."""
    at, number = now_text(), number or random_number()
    row: dict[str, Any] = {"NUMBER": number, "DATAAREAID": caller.legal_entity, "CURRENCY": currency,
           "BALANCE": units, "STATUS": ACTIVE, "CUSTACCOUNT": customer, "ISSUEDBY": caller.id, "CREATEDAT": at,
           "MODIFIEDAT": at}
    if not tx.insert_if_absent(tx.t(kind.table), row, ["NUMBER"]):
        raise conflict("already_exists", f"{kind.label} {number} already exists")
    entry = _ledger(tx, kind, caller, number, "issue", units, units, key)
    return {**_view(kind, row), "transaction": entry}


def change(tx: Tx, kind: AccountKind, caller: Caller, key: str, number: str, units: int, *, debit: bool,
           operation: str, currency: str | None = None) -> dict[str, Any]:
    """Add (``debit=False``) or take ``units``; 404 unknown, 409 void, (debit) not enough balance or
    ``currency`` given and not the account's."""
    _check_currency(tx, kind, caller, number, currency)
    t, bal = tx.t(kind.table), tx.q("BALANCE")
    sign = "-" if debit else "+"
    enough = f" AND {bal} >= {tx.p}" if debit else ""
    params: list[Any] = [units, now_text(), number, caller.legal_entity, ACTIVE] + ([units] if debit else [])
    row = tx.update_returning(t, f"{bal} = {bal} {sign} {tx.p}, {tx.q('MODIFIEDAT')} = {tx.p}",
                              tx.where(["NUMBER", "DATAAREAID", "STATUS"]) + enough, params, _COLUMNS,
                              ["NUMBER", "DATAAREAID"], [number, caller.legal_entity])
    if row is None:
        row = _row(tx, kind, caller, number)
        if row["STATUS"] != ACTIVE:
            raise conflict(f"{kind.kind}_{row['STATUS']}", f"{kind.label} {number} is {row['STATUS']}")
        raise conflict("insufficient_balance", f"{kind.label} {number} holds {kind.show(int(row['BALANCE']))},"
                       f" less than {kind.show(units)}")
    entry = _ledger(tx, kind, caller, number, operation, units, int(row["BALANCE"]), key)
    return {**_view(kind, row), "transaction": entry}


def void(tx: Tx, kind: AccountKind, caller: Caller, key: str, number: str) -> dict[str, Any]:
    """Void an active account; its remaining balance is written off in the ledger. 409 if not active."""
    row = _row(tx, kind, caller, number, lock=True)
    if row["STATUS"] != ACTIVE:
        raise conflict(f"{kind.kind}_{row['STATUS']}", f"{kind.label} {number} is {row['STATUS']}")
    tx.execute(f"UPDATE {tx.t(kind.table)} SET {tx.q('STATUS')} = {tx.p}, {tx.q('BALANCE')} = 0,"
               f" {tx.q('MODIFIEDAT')} = {tx.p} WHERE {tx.where(['NUMBER', 'DATAAREAID'])}",
               [VOID, now_text(), number, caller.legal_entity])
    after = _row(tx, kind, caller, number)
    entry = _ledger(tx, kind, caller, number, "void", int(row["BALANCE"]), 0, key)
    return {**_view(kind, after), "transaction": entry}


def _check_currency(tx: Tx, kind: AccountKind, caller: Caller, number: str, currency: str | None) -> None:
    """409 when ``currency`` is given and is not the account's (404 when there is no such account)."""
    if currency is None:
        return
    row = _row(tx, kind, caller, number)
    if currency != row["CURRENCY"]:
        raise ApiError(409, "currency_mismatch", f"the {kind.label} is in {row['CURRENCY']}, not {currency}")
