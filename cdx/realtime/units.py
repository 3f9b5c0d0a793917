"""Fixed-point amounts: money in cents, quantities in thousandths, stored as BIGINT everywhere.

Storing integers keeps arithmetic in conditional updates exact in every dialect (SQLite keeps
decimals as text). The API speaks decimals; these helpers convert at the edge.
"""

from __future__ import annotations

from decimal import Decimal

MONEY_SCALE = 100
"""Amounts are stored in cents (two decimals)."""
QTY_SCALE = 1000
"""Quantities are stored in thousandths (three decimals)."""
MAX_AMOUNT = Decimal("1000000000")
"""Largest amount or quantity one request may carry."""


def to_cents(amount: Decimal) -> int:
    return int(amount * MONEY_SCALE)


def from_cents(cents: int) -> Decimal:
    return (Decimal(int(cents)) / MONEY_SCALE).quantize(Decimal("0.01"))


def to_milli(quantity: Decimal) -> int:
    return int(quantity * QTY_SCALE)


def from_milli(milli: int) -> Decimal:
    return (Decimal(int(milli)) / QTY_SCALE).quantize(Decimal("0.001"))
