"""Loyalty cards: issue, look up (by number or customer), balance, earn and redeem points."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from cdx.realtime import accounts
from cdx.realtime.auth import CALLER, Caller
from cdx.realtime.common import CODE_PATTERN, NUMBER_PATTERN, Body, Code, Number, Points, mutate, read
from cdx.realtime.idempotency import IdempotencyKey

KIND = accounts.AccountKind("LOYALTYCARD", "loyalty", "loyalty card", int)
router = APIRouter(prefix="/v1/channels/{channel}/loyalty-cards", tags=["loyalty cards"])
CardNumber = Path(pattern=NUMBER_PATTERN, description="The loyalty card number.")


class IssueLoyaltyCard(Body):
    customer_account: Code | None = None
    card_number: Number | None = None


class PointsChange(Body):
    points: Points


@router.post("", status_code=201, summary="Issue a loyalty card (no points yet)")
def issue(request: Request, body: IssueLoyaltyCard, caller: Caller = CALLER, key: str = IdempotencyKey) -> Response:
    return mutate(request, caller, key, body, lambda tx: (201, accounts.issue(
        tx, KIND, caller, key, number=body.card_number, units=0, currency="PTS", customer=body.customer_account)))


@router.get("", summary="Look up the loyalty cards of a customer")
def by_customer(request: Request, customer_account: str = Query(pattern=CODE_PATTERN),
                caller: Caller = CALLER) -> dict[str, Any]:
    return read(request, lambda tx: {"cards": accounts.find_by_customer(tx, KIND, caller, customer_account)})


@router.get("/{number}", summary="Loyalty card and its points balance")
def lookup(request: Request, number: str = CardNumber, caller: Caller = CALLER) -> dict[str, Any]:
    return read(request, lambda tx: accounts.read(tx, KIND, caller, number))


@router.post("/{number}/earn", summary="Earn points")
def earn(request: Request, body: PointsChange, number: str = CardNumber, caller: Caller = CALLER,
         key: str = IdempotencyKey) -> Response:
    return mutate(request, caller, key, body, lambda tx: (200, accounts.change(
        tx, KIND, caller, key, number, body.points, debit=False, operation="earn")))


@router.post("/{number}/redeem", summary="Redeem points (never more than held)")
def redeem(request: Request, body: PointsChange, number: str = CardNumber, caller: Caller = CALLER,
           key: str = IdempotencyKey) -> Response:
    return mutate(request, caller, key, body, lambda tx: (200, accounts.change(
        tx, KIND, caller, key, number, body.points, debit=True, operation="redeem")))
