"""Gift cards: issue, add value, redeem (in any store of the legal entity), balance, void."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response

from cdx.realtime import accounts
from cdx.realtime.auth import CALLER, Caller
from cdx.realtime.common import NUMBER_PATTERN, Body, Currency, Money, Number, mutate, read
from cdx.realtime.idempotency import IdempotencyKey
from cdx.realtime.units import from_cents, to_cents

KIND = accounts.AccountKind("GIFTCARD", "giftcard", "gift card", lambda cents: str(from_cents(cents)))
router = APIRouter(prefix="/v1/channels/{channel}/gift-cards", tags=["gift cards"])
CardNumber = Path(pattern=NUMBER_PATTERN, description="The gift card number.")


class IssueGiftCard(Body):
    amount: Money
    currency: Currency
    card_number: Number | None = None
    """A pre-printed card's number; omitted: the service draws a random 19-digit number."""


class AmountChange(Body):
    amount: Money
    currency: Currency | None = None
    """When given, must be the card's currency."""


@router.post("", status_code=201, summary="Issue a gift card")
def issue(request: Request, body: IssueGiftCard, caller: Caller = CALLER, key: str = IdempotencyKey) -> Response:
    return mutate(request, caller, key, body, lambda tx: (201, accounts.issue(
        tx, KIND, caller, key, number=body.card_number, units=to_cents(body.amount), currency=body.currency,
        customer=None)))


@router.get("/{number}", summary="Gift card balance")
def balance(request: Request, number: str = CardNumber, caller: Caller = CALLER) -> dict[str, Any]:
    return read(request, lambda tx: accounts.read(tx, KIND, caller, number))


def _change(request: Request, caller: Caller, key: str, number: str, body: AmountChange, *, debit: bool,
            operation: str) -> Response:
    return mutate(request, caller, key, body, lambda tx: (200, accounts.change(
        tx, KIND, caller, key, number, to_cents(body.amount), debit=debit, operation=operation,
        currency=body.currency)))


@router.post("/{number}/add-value", summary="Add value to a gift card")
def add_value(request: Request, body: AmountChange, number: str = CardNumber,
              caller: Caller = CALLER, key: str = IdempotencyKey) -> Response:
    return _change(request, caller, key, number, body, debit=False, operation="add")


@router.post("/{number}/redeem", summary="Redeem (pay with) a gift card")
def redeem(request: Request, body: AmountChange, number: str = CardNumber,
           caller: Caller = CALLER, key: str = IdempotencyKey) -> Response:
    return _change(request, caller, key, number, body, debit=True, operation="redeem")


@router.post("/{number}/void", summary="Void a gift card (its balance is written off)")
def void(request: Request, number: str = CardNumber, caller: Caller = CALLER, key: str = IdempotencyKey) -> Response:
    return mutate(request, caller, key, None, lambda tx: (200, accounts.void(tx, KIND, caller, key, number)))
