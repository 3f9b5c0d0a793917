"""Inventory: receiving against purchase- and transfer-order lines, and count journals.

Order lines (``rts.INVENTORDERLINE``) are HQ's: each names the channel that receives it. A
receipt adds to lines' received quantity with one conditional update per line (``received +
qty <= ordered``), so partial receipts add up and an over-receipt is refused (409) with the
whole receipt: nothing of a refused receipt is applied. Count journals record the counted
quantity per item and location as submitted by the store.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response
from pydantic import Field, field_validator

from cdx.dialects import Connection, Dialect
from cdx.realtime.auth import CALLER, Caller
from cdx.realtime.common import CODE_PATTERN, Body, Code, Quantity, document_id, hq_of, mutate, read
from cdx.realtime.db import SCHEMA, Tx
from cdx.realtime.errors import conflict, not_found
from cdx.realtime.idempotency import IdempotencyKey, now_text
from cdx.realtime.units import MAX_AMOUNT, from_milli, to_milli

router = APIRouter(prefix="/v1/channels/{channel}/inventory", tags=["inventory"])
OrderType = Literal["purchase", "transfer"]
LineNumber = Annotated[int, Field(ge=1, le=1_000_000)]


class ReceiptLine(Body):
    line_number: LineNumber
    quantity: Quantity


class Receipt(Body):
    order_type: OrderType
    order_id: Code
    lines: list[ReceiptLine] = Field(min_length=1, max_length=500)

    @field_validator("lines")
    @classmethod
    def _distinct(cls, lines: list[ReceiptLine]) -> list[ReceiptLine]:
        numbers = [line.line_number for line in lines]
        if len(set(numbers)) != len(numbers):
            raise ValueError("each order line may appear once per receipt")
        return lines


class CountLine(Body):
    item_id: Code
    location: Code
    counted_quantity: Annotated[Decimal, Field(ge=0, le=MAX_AMOUNT, decimal_places=3, allow_inf_nan=False)]


class CountJournal(Body):
    lines: list[CountLine] = Field(min_length=1, max_length=1000)


def _lines(tx: Tx, caller: Caller, order_type: str, order_id: str) -> list[dict[str, Any]]:
    rows = tx.all(f"SELECT * FROM {tx.t('INVENTORDERLINE')}"
                  f" WHERE {tx.where(['ORDERTYPE', 'ORDERID', 'DATAAREAID', 'RECEIVINGCHANNEL'])}"
                  f" ORDER BY {tx.q('LINENUM')}", [order_type, order_id, caller.legal_entity, caller.channel])
    return [{"line_number": int(r["LINENUM"]), "item_id": r["ITEMID"], "ordered": str(from_milli(r["QTYORDERED"])),
             "received": str(from_milli(r["QTYRECEIVED"]))} for r in rows]


def _receive(tx: Tx, caller: Caller, body: Receipt) -> dict[str, Any]:
    if not _lines(tx, caller, body.order_type, body.order_id):
        raise not_found(f"{body.order_type} order")
    receipt_id, at = document_id(tx, "RCV"), now_text()
    table, received = tx.t("INVENTORDERLINE"), tx.q("QTYRECEIVED")
    for line in sorted(body.lines, key=lambda x: x.line_number):
        qty = to_milli(line.quantity)
        done = tx.execute(f"UPDATE {table} SET {received} = {received} + {tx.p}"
                          f" WHERE {tx.where(['ORDERTYPE', 'ORDERID', 'LINENUM', 'DATAAREAID', 'RECEIVINGCHANNEL'])}"
                          f" AND {received} + {tx.p} <= {tx.q('QTYORDERED')}",
                          [qty, body.order_type, body.order_id, line.line_number, caller.legal_entity,
                           caller.channel, qty])
        if done != 1:
            raise _refusal(tx, caller, body, line)
        tx.insert(tx.t("INVENTRECEIPT"), {"RECEIPTID": receipt_id, "ORDERTYPE": body.order_type,
                                          "ORDERID": body.order_id, "LINENUM": line.line_number, "QTY": qty,
                                          "CHANNEL": caller.channel, "PRINCIPAL": caller.id, "CREATEDAT": at})
    return {"receipt_id": receipt_id, "order_type": body.order_type, "order_id": body.order_id,
            "lines": _lines(tx, caller, body.order_type, body.order_id)}


def _refusal(tx: Tx, caller: Caller, body: Receipt, line: ReceiptLine) -> Exception:
    current = {r["line_number"]: r for r in _lines(tx, caller, body.order_type, body.order_id)}
    found = current.get(line.line_number)
    if found is None:
        return not_found(f"line {line.line_number} of {body.order_type} order {body.order_id}")
    open_qty = Decimal(found["ordered"]) - Decimal(found["received"])
    return conflict("over_receipt", f"line {line.line_number}: {line.quantity} exceeds the {open_qty} still open;"
                    " nothing of this receipt was applied")


@router.post("/receipts", status_code=201, summary="Receive against purchase or transfer order lines")
def receive(request: Request, body: Receipt, caller: Caller = CALLER, key: str = IdempotencyKey) -> Response:
    return mutate(request, caller, key, body, lambda tx: (201, _receive(tx, caller, body)))


@router.get("/orders/{order_type}/{order_id}", summary="A purchase or transfer order's lines, as received so far")
def order(request: Request, order_type: OrderType, order_id: str = Path(pattern=CODE_PATTERN),
          caller: Caller = CALLER) -> dict[str, Any]:
    with hq_of(request).transaction(write=False) as tx:
        lines = _lines(tx, caller, order_type, order_id)
    if not lines:
        raise not_found(f"{order_type} order")
    return {"order_type": order_type, "order_id": order_id, "lines": lines}


def _count(tx: Tx, caller: Caller, body: CountJournal) -> dict[str, Any]:
    journal_id = document_id(tx, "CNT")
    tx.insert(tx.t("COUNTJOURNAL"), {"JOURNALID": journal_id, "DATAAREAID": caller.legal_entity,
                                     "CHANNEL": caller.channel, "STATUS": "submitted", "PRINCIPAL": caller.id,
                                     "CREATEDAT": now_text()})
    for n, line in enumerate(body.lines, start=1):
        tx.insert(tx.t("COUNTLINE"), {"JOURNALID": journal_id, "LINENUM": n, "ITEMID": line.item_id,
                                      "LOCATION": line.location, "COUNTEDQTY": to_milli(line.counted_quantity)})
    return _journal(tx, caller, journal_id)


def _journal(tx: Tx, caller: Caller, journal_id: str) -> dict[str, Any]:
    head = tx.one(f"SELECT * FROM {tx.t('COUNTJOURNAL')} WHERE {tx.where(['JOURNALID', 'DATAAREAID'])}",
                  [journal_id, caller.legal_entity])
    if head is None:
        raise not_found("count journal")
    lines = tx.all(f"SELECT * FROM {tx.t('COUNTLINE')} WHERE {tx.where(['JOURNALID'])} ORDER BY {tx.q('LINENUM')}",
                   [journal_id])
    return {"journal_id": journal_id, "legal_entity": head["DATAAREAID"], "channel": head["CHANNEL"],
            "status": head["STATUS"], "submitted_by": head["PRINCIPAL"], "created_at": head["CREATEDAT"],
            "lines": [{"line_number": int(r["LINENUM"]), "item_id": r["ITEMID"], "location": r["LOCATION"],
                       "counted_quantity": str(from_milli(r["COUNTEDQTY"]))} for r in lines]}


@router.post("/count-journals", status_code=201, summary="Submit counted quantities per item and location")
def submit_count(request: Request, body: CountJournal, caller: Caller = CALLER, key: str = IdempotencyKey) -> Response:
    return mutate(request, caller, key, body, lambda tx: (201, _count(tx, caller, body)))


@router.get("/count-journals/{journal_id}", summary="A submitted count journal")
def count_journal(request: Request, journal_id: str = Path(pattern=CODE_PATTERN),
                  caller: Caller = CALLER) -> dict[str, Any]:
    return read(request, lambda tx: _journal(tx, caller, journal_id))


def add_order_lines(conn: Connection, dialect: Dialect, order_type: str, order_id: str, legal_entity: str,
                    receiving_channel: str, lines: list[tuple[str, Decimal]]) -> None:
    """HQ side: create a purchase or transfer order's lines (item, ordered quantity). Commits."""
    with dialect.transaction(conn):
        cur = conn.cursor()
        names = ["ORDERTYPE", "ORDERID", "LINENUM", "DATAAREAID", "RECEIVINGCHANNEL", "ITEMID", "QTYORDERED",
                 "QTYRECEIVED"]
        sql = (f"INSERT INTO {dialect.qualified(SCHEMA, 'INVENTORDERLINE')} ({dialect.columns_sql(names)})"
               f" VALUES ({', '.join([dialect.placeholder] * len(names))})")
        cur.executemany(sql, [(order_type, order_id, n, legal_entity, receiving_channel, item, to_milli(qty), 0)
                              for n, (item, qty) in enumerate(lines, start=1)])
