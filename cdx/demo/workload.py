"""HQ change generator: a believable mix of master-data edits on seeded HQ tables.

:func:`hq_changes` applies ``n`` operations drawn from :data:`MIX`:

- ``price_update``: new ``AMOUNT`` of a ``PRICEDISCTABLE`` row;
- ``product_insert``: a new shared product (``ECORESPRODUCT``), released to every legal entity
  (``INVENTTABLE``) with a base price (``PRICEDISCTABLE``);
- ``price_delete`` / ``discount_delete``: a ``PRICEDISCTABLE`` / ``RETAILPERIODICDISCOUNT`` row;
- ``customer_update``: ``CUSTGROUP``/``PRICEGROUP``/``BLOCKED`` of a customer and, one time in
  three, the ``NAME`` of its party (``DIRPARTYTABLE``).

Every written row gets ``MODIFIEDDATETIME`` = the UTC time its transaction started (naive), a
few microseconds before its commit, so capture-to-channel latency can be measured from it.
Operations run ``batch`` to a transaction. Deterministic for a given ``rng`` state and HQ
content. Assumes it is the only writer of new RECIDs (it allocates them from ``MAX(RECID)``).
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from cdx.demo import _words
from cdx.demo.retail_schema import HQ_SCHEMA, HQ_TABLES
from cdx.demo.seed import currency_of, item_id
from cdx.dialects import Connection, Dialect

__all__ = ["MIX", "hq_changes"]

MIX: dict[str, int] = {"price_update": 50, "product_insert": 10, "price_delete": 10, "discount_delete": 5,
                       "customer_update": 25}
"""Operation -> relative weight."""


def _take(rng: random.Random, items: list[Any]) -> Any:
    """Remove and return a random element in O(1) (order of the rest is not kept)."""
    i = rng.randrange(len(items))
    items[i], items[-1] = items[-1], items[i]
    return items.pop()


class _Hq:
    """The HQ keys the operations pick from, loaded once per call and kept up to date."""

    def __init__(self, conn: Connection, dialect: Dialect, schema: str) -> None:
        self.conn, self.d, self.schema = conn, dialect, schema
        self.prices = self.select("PRICEDISCTABLE", ["DATAAREAID", "RECID"])
        self.discounts = self.select("RETAILPERIODICDISCOUNT", ["DATAAREAID", "OFFERID"])
        self.customers = self.select("CUSTTABLE", ["DATAAREAID", "ACCOUNTNUM", "PARTY"])
        self.entities = sorted({r[0] for r in self.select("INVENTTABLE", ["DATAAREAID"])})
        self.recids = {t: max((int(r[0]) for r in self.select(t, ["RECID"])), default=0)
                       for t in ("ECORESPRODUCT", "INVENTTABLE", "PRICEDISCTABLE")}
        self.products = len(self.select("ECORESPRODUCT", ["RECID"]))

    def select(self, table: str, columns: list[str]) -> list[tuple[Any, ...]]:
        """Every row of ``columns``, ordered by them (so picks are deterministic)."""
        cols = self.d.columns_sql(columns)
        cur = self.conn.cursor()
        cur.execute(f"SELECT {cols} FROM {self.d.qualified(self.schema, table)} ORDER BY {cols}")
        return [tuple(r) for r in cur.fetchall()]

    def _where(self, key: dict[str, Any]) -> str:
        return " AND ".join(f"{self.d.quote_ident(c)} = {self.d.placeholder}" for c in key)

    def _run(self, sql: str, params: Sequence[Any]) -> None:
        self.conn.cursor().execute(sql, [self.d.encode(v) for v in params])

    def update(self, table: str, values: dict[str, Any], key: dict[str, Any]) -> None:
        sets = ", ".join(f"{self.d.quote_ident(c)} = {self.d.placeholder}" for c in values)
        self._run(f"UPDATE {self.d.qualified(self.schema, table)} SET {sets} WHERE {self._where(key)}",
                  (*values.values(), *key.values()))

    def delete(self, table: str, key: dict[str, Any]) -> None:
        self._run(f"DELETE FROM {self.d.qualified(self.schema, table)} WHERE {self._where(key)}", tuple(key.values()))

    def insert(self, table: str, row: dict[str, Any]) -> None:
        names = HQ_TABLES[table].column_names
        self._run(f"INSERT INTO {self.d.qualified(self.schema, table)} ({self.d.columns_sql(names)})"
                  f" VALUES ({', '.join([self.d.placeholder] * len(names))})", [row[c] for c in names])

    def next_recid(self, table: str) -> int:
        self.recids[table] += 1
        return self.recids[table]


def _audit(now: dt.datetime) -> dict[str, Any]:
    return {"MODIFIEDDATETIME": now, "MODIFIEDBY": "workload", "CREATEDDATETIME": now, "CREATEDBY": "workload"}


def _price(rng: random.Random) -> Decimal:
    return Decimal(rng.randrange(5, 400)) - Decimal("0.01")


def _price_update(hq: _Hq, rng: random.Random, now: dt.datetime) -> str:
    if not hq.prices:
        return _product_insert(hq, rng, now)
    le, recid = hq.prices[rng.randrange(len(hq.prices))]
    hq.update("PRICEDISCTABLE", {"AMOUNT": _price(rng), "MODIFIEDDATETIME": now, "MODIFIEDBY": "workload"},
              {"DATAAREAID": le, "RECID": recid})
    return "price_update"


def _product_insert(hq: _Hq, rng: random.Random, now: dt.datetime) -> str:
    hq.products += 1
    n, product = hq.products, hq.next_recid("ECORESPRODUCT")
    name = f"{rng.choice(_words.ADJECTIVES)} {rng.choice(_words.NOUNS)} {rng.choice(_words.VARIANTS)}"
    hq.insert("ECORESPRODUCT", {"RECID": product, "DISPLAYPRODUCTNUMBER": item_id(n), "PRODUCTTYPE": 1,
                                "SEARCHNAME": name[:20], "INSTANCERELATIONTYPE": 4470, "RECVERSION": 1, **_audit(now)})
    for le in hq.entities:
        hq.insert("INVENTTABLE", {"DATAAREAID": le, "ITEMID": item_id(n), "PRODUCT": product, "NAMEALIAS": name[:20],
                                  "ITEMTYPE": 0, "PRIMARYVENDORID": None, "RECID": hq.next_recid("INVENTTABLE"),
                                  "NETWEIGHT": Decimal("0.5"), **_audit(now)})
        recid = hq.next_recid("PRICEDISCTABLE")
        hq.insert("PRICEDISCTABLE", {
            "DATAAREAID": le, "RECID": recid, "RELATION": 4, "ITEMCODE": 0, "ITEMRELATION": item_id(n),
            "ACCOUNTCODE": 2, "ACCOUNTRELATION": "", "AMOUNT": _price(rng), "CURRENCY": currency_of(le),
            "UNITID": "ea", "QUANTITYAMOUNTFROM": Decimal(0), "QUANTITYAMOUNTTO": Decimal(0),
            "FROMDATE": now.date(), "TODATE": dt.date(1900, 1, 1), "PRICEUNIT": Decimal(1), **_audit(now)})
        hq.prices.append((le, recid))
    return "product_insert"


def _price_delete(hq: _Hq, rng: random.Random, now: dt.datetime) -> str:
    if not hq.prices:
        return _product_insert(hq, rng, now)
    le, recid = _take(rng, hq.prices)
    hq.delete("PRICEDISCTABLE", {"DATAAREAID": le, "RECID": recid})
    return "price_delete"


def _discount_delete(hq: _Hq, rng: random.Random, now: dt.datetime) -> str:
    if not hq.discounts:
        return _price_delete(hq, rng, now)
    le, offer = _take(rng, hq.discounts)
    hq.delete("RETAILPERIODICDISCOUNT", {"DATAAREAID": le, "OFFERID": offer})
    return "discount_delete"


def _customer_update(hq: _Hq, rng: random.Random, now: dt.datetime) -> str:
    if not hq.customers:
        return _price_update(hq, rng, now)
    le, account, party = hq.customers[rng.randrange(len(hq.customers))]
    hq.update("CUSTTABLE", {"CUSTGROUP": rng.choice(("RETAIL", "ONLINE", "WHOLESALE", "STAFF")),
                            "PRICEGROUP": rng.choice((None, None, "VIP")),
                            "BLOCKED": rng.choices((0, 1, 2), (90, 5, 5))[0],
                            "MODIFIEDDATETIME": now, "MODIFIEDBY": "workload"},
              {"DATAAREAID": le, "ACCOUNTNUM": account})
    if rng.random() < 1 / 3:
        lang = "de" if str(le).casefold().startswith("de") else "en"
        name = f"{rng.choice(_words.FIRST_NAMES[lang])} {rng.choice(_words.LAST_NAMES[lang])}"
        hq.update("DIRPARTYTABLE", {"NAME": name, "MODIFIEDDATETIME": now, "MODIFIEDBY": "workload"}, {"RECID": party})
    return "customer_update"


_OPS = {"price_update": _price_update, "product_insert": _product_insert, "price_delete": _price_delete,
        "discount_delete": _discount_delete, "customer_update": _customer_update}


def hq_changes(conn: Connection, dialect: Dialect, rng: random.Random, n: int, *, batch: int = 1,
               schema: str = HQ_SCHEMA, mix: dict[str, int] | None = None) -> dict[str, int]:
    """Apply ``n`` operations (weights ``mix``, default :data:`MIX`), ``batch`` per transaction.

    Returns the count done per operation (an operation with nothing left to work on, e.g. a
    delete on an empty table, falls back to another and is counted as that one).
    """
    weights = mix or MIX
    unknown = set(weights) - set(_OPS)
    if unknown:
        raise ValueError(f"unknown operations {sorted(unknown)}; use {sorted(_OPS)}")
    with dialect.transaction(conn):
        hq = _Hq(conn, dialect, schema)
    ops = rng.choices(list(weights), list(weights.values()), k=n)
    counts = dict.fromkeys(_OPS, 0)
    for start in range(0, n, max(1, batch)):
        with dialect.transaction(conn):
            now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
            for op in ops[start:start + max(1, batch)]:
                counts[_OPS[op](hq, rng, now)] += 1
    return counts
