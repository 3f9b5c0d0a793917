"""Sales orders (customer orders): create, replace lines, complete or pick up, look up.

An order belongs to the legal entity and channel that created it; any channel of the legal
entity may look it up and pick it up (buy online, pick up in store). Lines change only while
the order is ``open``; ``complete`` and ``pickup`` move it to ``completed`` / ``picked_up`` once.
The order row is locked while it changes, so concurrent edits apply one after another.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response
from pydantic import Field

from cdx.realtime.auth import CALLER, Caller
from cdx.realtime.common import CODE_PATTERN, Body, Code, Money, Quantity, document_id, hq_of, mutate, read
from cdx.realtime.db import Tx
from cdx.realtime.errors import conflict, not_found
from cdx.realtime.idempotency import IdempotencyKey, now_text
from cdx.realtime.units import from_cents, from_milli, to_cents, to_milli

router = APIRouter(prefix="/v1/channels/{channel}/sales-orders", tags=["sales orders"])
OrderId = Path(pattern=CODE_PATTERN, description="The sales order id, e.g. SO-00000042.")
OPEN = "open"
_FINAL = {"complete": "completed", "pickup": "picked_up"}


class OrderLine(Body):
    item_id: Code
    quantity: Quantity
    price: Money


class NewOrder(Body):
    customer_account: Code
    lines: list[OrderLine] = Field(min_length=1, max_length=200)


class NewLines(Body):
    lines: list[OrderLine] = Field(min_length=1, max_length=200)


def _order(tx: Tx, caller: Caller, order_id: str, lock: bool = False) -> dict[str, Any]:
    table, suffix = tx.caps.locked(tx.t("SALESORDER")) if lock else (tx.t("SALESORDER"), "")
    row = tx.one(f"SELECT * FROM {table} WHERE {tx.where(['ORDERID', 'DATAAREAID'])}{suffix}",
                 [order_id, caller.legal_entity])
    if row is None:
        raise not_found("sales order")
    return row


def _view(tx: Tx, row: dict[str, Any]) -> dict[str, Any]:
    lines = tx.all(f"SELECT * FROM {tx.t('SALESLINE')} WHERE {tx.where(['ORDERID'])} ORDER BY {tx.q('LINENUM')}",
                   [row["ORDERID"]])
    out = [{"line_number": int(r["LINENUM"]), "item_id": r["ITEMID"], "quantity": str(from_milli(r["QTY"])),
            "price": str(from_cents(r["PRICE"]))} for r in lines]
    total = sum((from_milli(r["QTY"]) * from_cents(r["PRICE"]) for r in lines), Decimal(0))
    return {"order_id": row["ORDERID"], "legal_entity": row["DATAAREAID"], "channel": row["CHANNEL"],
            "customer_account": row["CUSTACCOUNT"], "status": row["STATUS"], "created_by": row["CREATEDBY"],
            "created_at": row["CREATEDAT"], "modified_at": row["MODIFIEDAT"], "lines": out,
            "total": str(total.quantize(from_cents(1)))}


def _write_lines(tx: Tx, order_id: str, lines: list[OrderLine]) -> None:
    tx.execute(f"DELETE FROM {tx.t('SALESLINE')} WHERE {tx.where(['ORDERID'])}", [order_id])
    for n, line in enumerate(lines, start=1):
        tx.insert(tx.t("SALESLINE"), {"ORDERID": order_id, "LINENUM": n, "ITEMID": line.item_id,
                                      "QTY": to_milli(line.quantity), "PRICE": to_cents(line.price)})


def _create(tx: Tx, caller: Caller, body: NewOrder) -> dict[str, Any]:
    order_id, at = document_id(tx, "SO"), now_text()
    tx.insert(tx.t("SALESORDER"), {"ORDERID": order_id, "DATAAREAID": caller.legal_entity, "CHANNEL": caller.channel,
                                   "CUSTACCOUNT": body.customer_account, "STATUS": OPEN, "CREATEDBY": caller.id,
                                   "CREATEDAT": at, "MODIFIEDAT": at})
    _write_lines(tx, order_id, body.lines)
    return _view(tx, _order(tx, caller, order_id))


def _set_status(tx: Tx, caller: Caller, order_id: str, status: str) -> None:
    tx.execute(f"UPDATE {tx.t('SALESORDER')} SET {tx.q('STATUS')} = {tx.p}, {tx.q('MODIFIEDAT')} = {tx.p}"
               f" WHERE {tx.where(['ORDERID', 'DATAAREAID'])}", [status, now_text(), order_id, caller.legal_entity])


def _replace_lines(tx: Tx, caller: Caller, order_id: str, body: NewLines) -> dict[str, Any]:
    row = _order(tx, caller, order_id, lock=True)
    if row["STATUS"] != OPEN:
        raise conflict("order_closed", f"sales order {order_id} is {row['STATUS']}; only open orders change")
    _write_lines(tx, order_id, body.lines)
    _set_status(tx, caller, order_id, OPEN)
    return _view(tx, _order(tx, caller, order_id))


def _finish(tx: Tx, caller: Caller, order_id: str, action: str) -> dict[str, Any]:
    row = _order(tx, caller, order_id, lock=True)
    if row["STATUS"] != OPEN:
        raise conflict("order_closed", f"sales order {order_id} is {row['STATUS']} already")
    _set_status(tx, caller, order_id, _FINAL[action])
    return _view(tx, _order(tx, caller, order_id))


@router.post("", status_code=201, summary="Create a sales order")
def create(request: Request, body: NewOrder, caller: Caller = CALLER, key: str = IdempotencyKey) -> Response:
    return mutate(request, caller, key, body, lambda tx: (201, _create(tx, caller, body)))


@router.put("/{order_id}/lines", summary="Replace the lines of an open sales order")
def replace_lines(request: Request, body: NewLines, order_id: str = OrderId, caller: Caller = CALLER,
                  key: str = IdempotencyKey) -> Response:
    return mutate(request, caller, key, body, lambda tx: (200, _replace_lines(tx, caller, order_id, body)))


@router.post("/{order_id}/{action}", summary="Complete an open sales order, or record its pickup")
def finish(request: Request, action: Literal["complete", "pickup"], order_id: str = OrderId,
           caller: Caller = CALLER, key: str = IdempotencyKey) -> Response:
    return mutate(request, caller, key, None, lambda tx: (200, _finish(tx, caller, order_id, action)))


@router.get("/{order_id}", summary="One sales order with its lines")
def get(request: Request, order_id: str = OrderId, caller: Caller = CALLER) -> dict[str, Any]:
    return read(request, lambda tx: _view(tx, _order(tx, caller, order_id)))


@router.get("", summary="The sales orders of a customer, newest first")
def by_customer(request: Request, customer_account: str = Query(pattern=CODE_PATTERN),
                limit: int = Query(20, ge=1, le=100), caller: Caller = CALLER) -> dict[str, Any]:
    with hq_of(request).transaction(write=False) as tx:
        top, tail = tx.caps.top(limit)
        rows = tx.all(f"SELECT {top}* FROM {tx.t('SALESORDER')} WHERE {tx.where(['CUSTACCOUNT', 'DATAAREAID'])}"
                      f" ORDER BY {tx.q('ORDERID')} DESC{tail}", [customer_account, caller.legal_entity])
        return {"orders": [_view(tx, r) for r in rows]}
