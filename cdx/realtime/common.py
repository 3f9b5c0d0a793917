"""Pieces every resource family shares: field types, number allocation, the mutation wrapper."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from decimal import Decimal
from typing import Annotated, TypeVar

from fastapi import Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from cdx.realtime.auth import Caller
from cdx.realtime.db import Hq, Tx
from cdx.realtime.idempotency import Work, fingerprint, run_once
from cdx.realtime.units import MAX_AMOUNT

Money = Annotated[Decimal, Field(gt=0, le=MAX_AMOUNT, decimal_places=2, allow_inf_nan=False,
                                 description="An amount, at most two decimals.")]
Quantity = Annotated[Decimal, Field(gt=0, le=MAX_AMOUNT, decimal_places=3, allow_inf_nan=False,
                                    description="A quantity, at most three decimals.")]
Points = Annotated[int, Field(gt=0, le=1_000_000_000, description="Loyalty points (whole).")]
Code = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,19}$", description="An id such as ITEMID.")]
Number = Annotated[str, Field(pattern=r"^[A-Za-z0-9-]{4,40}$", description="A card or memo number.")]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code, e.g. USD.")]
Text = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$")]
NUMBER_PATTERN = r"^[A-Za-z0-9-]{4,40}$"
T = TypeVar("T")
CODE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,19}$"


class Body(BaseModel):
    """Request bodies: frozen, unknown fields refused (a typo must not pass silently)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def hq_of(request: Request) -> Hq:
    hq: Hq = request.app.state.hq
    return hq


def read(request: Request, work: Callable[[Tx], T]) -> T:
    """``work(tx)`` in a read-only HQ transaction (no write lock in SQLite)."""
    with hq_of(request).transaction(write=False) as tx:
        return work(tx)


def mutate(request: Request, caller: Caller, key: str, body: BaseModel | None, work: Work) -> Response:
    """Run ``work`` exactly once for the caller's ``Idempotency-Key`` (see ``cdx.realtime.idempotency``)."""
    return run_once(hq_of(request), caller, key, fingerprint(request, body), work)


def next_number(tx: Tx, name: str, floor: int = 0) -> int:
    """The next value of the named sequence, above ``floor``; gap-free within committed transactions.

    The sequence row is updated (and so locked) in the caller's transaction: allocations of one
    sequence are serialised, and a rolled-back allocation is given out again."""
    table = tx.t("NUMBERSEQ")
    if tx.insert_if_absent(table, {"NAME": name, "LASTVAL": floor + 1}, ["NAME"]):
        return floor + 1
    last = tx.q("LASTVAL")
    tx.execute(f"UPDATE {table} SET {last} = CASE WHEN {last} >= {tx.p} THEN {last} + 1 ELSE {tx.p} END"
               f" WHERE {tx.where(['NAME'])}", [floor, floor + 1, name])
    row = tx.one(f"SELECT {last} FROM {table} WHERE {tx.where(['NAME'])}", [name])
    assert row is not None
    return int(row["LASTVAL"])


def document_id(tx: Tx, prefix: str) -> str:
    """A readable sequential id such as ``SO-00000042``."""
    return f"{prefix}-{next_number(tx, prefix):08d}"


def random_number(digits: int = 19) -> str:
    """An unguessable card number (cryptographically random digits, no leading zero)."""
    return str(10 ** (digits - 1) + secrets.randbelow(9 * 10 ** (digits - 1)))
