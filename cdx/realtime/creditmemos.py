"""Credit memos: issue (e.g. for a return paid back as store credit), redeem, balance."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response

from cdx.realtime import accounts
from cdx.realtime.auth import CALLER, Caller
from cdx.realtime.common import NUMBER_PATTERN, Body, Code, Currency, Money, mutate, read
from cdx.realtime.idempotency import IdempotencyKey
from cdx.realtime.units import from_cents, to_cents

KIND = accounts.AccountKind("CREDITMEMO", "creditmemo", "credit memo", lambda cents: str(from_cents(cents)))
router = APIRouter(prefix="/v1/channels/{channel}/credit-memos", tags=["credit memos"])
MemoNumber = Path(pattern=NUMBER_PATTERN, description="The credit memo number.")


class IssueCreditMemo(Body):
    amount: Money
    currency: Currency
    customer_account: Code | None = None


class RedeemCreditMemo(Body):
    amount: Money
    currency: Currency | None = None


@router.post("", status_code=201, summary="Issue a credit memo")
def issue(request: Request, body: IssueCreditMemo, caller: Caller = CALLER, key: str = IdempotencyKey) -> Response:
    return mutate(request, caller, key, body, lambda tx: (201, accounts.issue(
        tx, KIND, caller, key, number=None, units=to_cents(body.amount), currency=body.currency,
        customer=body.customer_account)))


@router.get("/{number}", summary="Credit memo balance")
def balance(request: Request, number: str = MemoNumber, caller: Caller = CALLER) -> dict[str, Any]:
    return read(request, lambda tx: accounts.read(tx, KIND, caller, number))


@router.post("/{number}/redeem", summary="Redeem a credit memo, fully or in part")
def redeem(request: Request, body: RedeemCreditMemo, number: str = MemoNumber,
           caller: Caller = CALLER, key: str = IdempotencyKey) -> Response:
    return mutate(request, caller, key, body, lambda tx: (200, accounts.change(
        tx, KIND, caller, key, number, to_cents(body.amount), debit=True, operation="redeem",
        currency=body.currency)))
