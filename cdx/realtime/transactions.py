"""Cross-store transactions and returns against them.

A sale uploaded to HQ from any store of the caller's legal entity can be looked up by its
receipt number (``TRANSACTIONID``). A return names the receipt and the lines and quantities
taken back; HQ keeps the returned quantity per sold line (``rts.RETURNEDQTY``) and raises it by
a conditional update (``returned + qty <= sold``), so the same item cannot be returned twice,
not even at the same moment in two stores. A refused return applies nothing.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response
from pydantic import Field, field_validator

from cdx.realtime.auth import CALLER, ID_PATTERN, Caller
from cdx.realtime.common import Body, Quantity, document_id, mutate, read
from cdx.realtime.config import RealtimeSettings
from cdx.realtime.db import Tx
from cdx.realtime.errors import conflict, not_found
from cdx.realtime.idempotency import IdempotencyKey, now_text
from cdx.realtime.units import from_milli, to_cents, to_milli

router = APIRouter(prefix="/v1/channels/{channel}", tags=["transactions and returns"])
RECEIPT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$"
Receipt = Annotated[str, Field(pattern=RECEIPT_PATTERN, description="The receipt number (TRANSACTIONID).")]
Store = Annotated[str, Field(pattern=ID_PATTERN, description="The selling store, when receipts repeat across stores.")]
_CENT = Decimal("0.01")


class ReturnLine(Body):
    line_number: Annotated[int, Field(ge=1, le=1_000_000)]
    quantity: Quantity


class NewReturn(Body):
    receipt_id: Receipt
    store: Store | None = None
    lines: list[ReturnLine] = Field(min_length=1, max_length=200)

    @field_validator("lines")
    @classmethod
    def _distinct(cls, lines: list[ReturnLine]) -> list[ReturnLine]:
        if len({line.line_number for line in lines}) != len(lines):
            raise ValueError("each sold line may appear once per return")
        return lines


def _sale(tx: Tx, settings: RealtimeSettings, caller: Caller, receipt: str, store: str | None) -> dict[str, Any]:
    d, h = tx.d, settings.header_table
    names, params = ["DATAAREAID", "TRANSACTIONID"], [caller.legal_entity, receipt]
    if store:
        names, params = [*names, "STORE"], [*params, store]
    heads = tx.all(f"SELECT * FROM {d.qualified(h.schema, h.name)} WHERE {tx.where(names)}", params)
    if not heads:
        raise not_found("sale")
    if len(heads) > 1:
        raise conflict("ambiguous_receipt", f"receipt {receipt} exists in several stores; give the store")
    head = {k.upper(): v for k, v in heads[0].items()}
    key = [head["DATAAREAID"], head["CHANNEL"], head["STORE"], head["TERMINAL"], head["TRANSACTIONID"]]
    ln = settings.lines_table
    match = tx.where(["DATAAREAID", "CHANNEL", "STORE", "TERMINAL", "TRANSACTIONID"])
    rows = tx.all(f"SELECT * FROM {d.qualified(ln.schema, ln.name)} WHERE {match} ORDER BY {tx.q('LINENUM')}", key)
    head["LINES"] = [{k.upper(): v for k, v in r.items()} for r in rows]
    return head


def _returned(tx: Tx, head: dict[str, Any]) -> dict[int, int]:
    rows = tx.all(f"SELECT {tx.cols(['LINENUM', 'QTYRETURNED'])} FROM {tx.t('RETURNEDQTY')}"
                  f" WHERE {tx.where(['DATAAREAID', 'STORE', 'TERMINAL', 'TRANSACTIONID'])}",
                  [head["DATAAREAID"], head["STORE"], head["TERMINAL"], head["TRANSACTIONID"]])
    return {int(r["LINENUM"]): int(r["QTYRETURNED"]) for r in rows}


def _sold(line: dict[str, Any]) -> int:
    return abs(to_milli(Decimal(str(line["QTY"]))))


def _view(tx: Tx, head: dict[str, Any]) -> dict[str, Any]:
    returned = _returned(tx, head)
    lines = [{"line_number": int(r["LINENUM"]), "item_id": r["ITEMID"], "quantity": str(from_milli(_sold(r))),
              "price": str(Decimal(str(r["PRICE"])).quantize(_CENT)),
              "net_amount": str(Decimal(str(r["NETAMOUNT"])).quantize(_CENT)),
              "returned_quantity": str(from_milli(returned.get(int(r["LINENUM"]), 0))),
              "returnable_quantity": str(from_milli(_sold(r) - returned.get(int(r["LINENUM"]), 0)))}
             for r in head["LINES"]]
    return {"receipt_id": head["TRANSACTIONID"], "legal_entity": head["DATAAREAID"], "store": head["STORE"],
            "terminal": head["TERMINAL"], "customer_account": head.get("CUSTACCOUNT"),
            "currency": head.get("CURRENCY"), "date": str(head.get("TRANSDATE")), "lines": lines}


@router.get("/transactions/{receipt_id}", summary="A sale from any store of the legal entity, by receipt number")
def lookup(request: Request, receipt_id: str = Path(pattern=RECEIPT_PATTERN),
           store: str | None = Query(None, pattern=ID_PATTERN), caller: Caller = CALLER
           ) -> dict[str, Any]:
    return read(request, lambda tx: _view(tx, _sale(tx, request.app.state.settings, caller, receipt_id, store)))


def _return(tx: Tx, settings: RealtimeSettings, caller: Caller, body: NewReturn) -> dict[str, Any]:
    head = _sale(tx, settings, caller, body.receipt_id, body.store)
    sold = {int(r["LINENUM"]): r for r in head["LINES"]}
    return_id, at = document_id(tx, "RET"), now_text()
    ident = [head["DATAAREAID"], head["STORE"], head["TERMINAL"], head["TRANSACTIONID"]]
    table, done = tx.t("RETURNEDQTY"), tx.q("QTYRETURNED")
    out, total = [], Decimal(0)
    for n, line in enumerate(sorted(body.lines, key=lambda x: x.line_number), start=1):
        original = sold.get(line.line_number)
        if original is None:
            raise not_found(f"line {line.line_number} of receipt {body.receipt_id}")
        qty = to_milli(line.quantity)
        names = ["DATAAREAID", "STORE", "TERMINAL", "TRANSACTIONID", "LINENUM"]
        tx.insert_if_absent(table, dict(zip(names, [*ident, line.line_number], strict=True)) | {"QTYRETURNED": 0},
                            names)
        if tx.execute(f"UPDATE {table} SET {done} = {done} + {tx.p} WHERE {tx.where(names)} AND {done} + {tx.p} <= "
                      f"{tx.p}", [qty, *ident, line.line_number, qty, _sold(original)]) != 1:
            left = from_milli(_sold(original) - _returned(tx, head).get(line.line_number, 0))
            raise conflict("already_returned", f"line {line.line_number}: only {left} can still be returned;"
                           " nothing of this return was applied")
        refund = (Decimal(str(original["NETAMOUNT"])) * qty / _sold(original)).quantize(_CENT, ROUND_HALF_UP)
        total += refund
        tx.insert(tx.t("RETURNLINE"), {
            "RETURNID": return_id, "LINENUM": n, "DATAAREAID": head["DATAAREAID"], "ORIGSTORE": head["STORE"],
            "ORIGTERMINAL": head["TERMINAL"], "ORIGTRANSACTIONID": head["TRANSACTIONID"],
            "ORIGLINENUM": line.line_number, "ITEMID": original["ITEMID"], "QTY": qty, "AMOUNT": to_cents(refund),
            "CHANNEL": caller.channel, "PRINCIPAL": caller.id, "CREATEDAT": at})
        out.append({"line_number": line.line_number, "item_id": original["ITEMID"],
                    "quantity": str(from_milli(qty)), "refund": str(refund)})
    return {"return_id": return_id, "receipt_id": head["TRANSACTIONID"], "store": head["STORE"],
            "returned_at": caller.channel, "lines": out, "total_refund": str(total.quantize(_CENT)),
            "sale": _view(tx, head)}


@router.post("/returns", status_code=201, summary="Return items of a sale made in any store of the legal entity")
def create_return(request: Request, body: NewReturn, caller: Caller = CALLER, key: str = IdempotencyKey) -> Response:
    settings = request.app.state.settings
    return mutate(request, caller, key, body, lambda tx: (201, _return(tx, settings, caller, body)))
