"""Deterministic, believable HQ master data for the sample topology.

:func:`generate` builds rows from ``seed`` and ``scale`` alone (same inputs, same rows, in
any process); :func:`seed_hq` creates the HQ tables and bulk-loads them through the dialect
(``upsert_rows``: executemany on SQLite, COPY on PostgreSQL, fast_executemany on SQL Server).

At ``scale=1.0``: 5,000 shared products released to every legal entity of the topology's
groups (``usrt``, ``dert``: 10,000 items), 2 prices per item and legal entity (20,000), 200
discounts and 50 staff per legal entity, 5,000 customers split across legal entities, one
party per customer and staff member, one ``RETAILCHANNELTABLE`` row per topology channel
(``RECID`` = ``attributes.recid``) plus 2 undeployed stores per legal entity, and 3
terminals per store (``<channel>-pos-NN``, which covers the registers ``store-0001-pos-01``;
other register ids get a terminal of their own). Timestamps are fixed in 2024 (naive UTC).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from cdx.demo import _words
from cdx.demo.retail_schema import HQ_TABLES, create_hq_tables
from cdx.dialects import Connection, Dialect
from cdx.topology import ChannelType, Topology

__all__ = ["BASE_TIME", "account_num", "currency_of", "generate", "item_id", "seed_hq", "staff_id"]

BASE_TIME = dt.datetime(2024, 1, 1)
NO_DATE = dt.date(1900, 1, 1)
"""AX's "no date" (open-ended validity)."""
RECID_BASE = {
    "ECORESPRODUCT": 5_637_200_000, "INVENTTABLE": 5_637_300_000, "PRICEDISCTABLE": 5_637_400_000,
    "RETAILPERIODICDISCOUNT": 5_637_500_000, "CUSTTABLE": 5_637_600_000, "DIRPARTYTABLE": 5_637_700_000,
    "RETAILSTAFFTABLE": 5_637_800_000, "RETAILTERMINALTABLE": 5_637_900_000, "OMOPERATINGUNIT": 5_638_000_000,
}
_CURRENCIES = {"usrt": "USD", "dert": "EUR"}
_CENT = Decimal("0.01")
Rows = list[tuple[Any, ...]]


def item_id(n: int) -> str:
    """ITEMID of the n-th product (1-based), shared by every legal entity."""
    return f"{n:06d}"


def account_num(dataareaid: str, n: int) -> str:
    """ACCOUNTNUM of the n-th customer (1-based) of a legal entity."""
    return f"{dataareaid.upper()}-{n:06d}"


def staff_id(n: int) -> str:
    """STAFFID of the n-th staff member (1-based) of a legal entity."""
    return f"{n:06d}"


def currency_of(dataareaid: str) -> str:
    return _CURRENCIES.get(dataareaid.casefold(), "USD")


def _lang(dataareaid: str) -> str:
    return "de" if dataareaid.casefold().startswith("de") else "en"


def _count(base: int, scale: float) -> int:
    return max(1, round(base * scale))


class _Gen:
    def __init__(self, topology: Topology, scale: float, seed: int) -> None:
        self.topology, self.scale, self.seed = topology, scale, seed
        self.entities = list(dict.fromkeys(e.casefold() for g in topology.channel_data_groups
                                           for e in g.legal_entities))
        self.products = _count(5_000, scale)
        self.customers = max(len(self.entities), _count(5_000, scale))
        self.staff = _count(50, scale)
        self.discounts = _count(200, scale)

    def rng(self, table: str) -> random.Random:
        return random.Random(f"{self.seed}/{table}")

    @staticmethod
    def audit(rng: random.Random) -> dict[str, Any]:
        created = BASE_TIME + dt.timedelta(seconds=rng.randrange(180 * 86_400))
        return {"CREATEDDATETIME": created, "CREATEDBY": "admin",
                "MODIFIEDDATETIME": created + dt.timedelta(seconds=rng.randrange(180 * 86_400)),
                "MODIFIEDBY": rng.choice(("admin", "jsmith", "mweber", "batch"))}

    # -- products and prices ------------------------------------------------------------
    def product_name(self, n: int) -> str:
        rng = random.Random(f"{self.seed}/name/{n}")
        return f"{rng.choice(_words.ADJECTIVES)} {rng.choice(_words.NOUNS)} {rng.choice(_words.VARIANTS)}"

    def ecoresproduct(self) -> Iterator[dict[str, Any]]:
        rng = self.rng("ECORESPRODUCT")
        for n in range(1, self.products + 1):
            service = rng.random() < 0.05
            yield {"RECID": RECID_BASE["ECORESPRODUCT"] + n, "DISPLAYPRODUCTNUMBER": item_id(n),
                   "PRODUCTTYPE": 2 if service else 1, "SEARCHNAME": self.product_name(n)[:20],
                   "INSTANCERELATIONTYPE": 4470, "RECVERSION": 1, **self.audit(rng)}

    def inventtable(self) -> Iterator[dict[str, Any]]:
        rng, recid = self.rng("INVENTTABLE"), RECID_BASE["INVENTTABLE"]
        types = {p["RECID"]: p["PRODUCTTYPE"] for p in self.ecoresproduct()}
        for le in self.entities:
            for n in range(1, self.products + 1):
                recid += 1
                product = RECID_BASE["ECORESPRODUCT"] + n
                vendor = None if rng.random() < 0.1 else f"{le.upper()}-V{rng.randrange(1, 200):04d}"
                yield {"DATAAREAID": le, "ITEMID": item_id(n), "PRODUCT": product,
                       "NAMEALIAS": self.product_name(n)[:20], "ITEMTYPE": 2 if types[product] == 2 else 0,
                       "PRIMARYVENDORID": vendor, "RECID": recid,
                       "NETWEIGHT": Decimal(rng.randrange(50, 5_000)) / 1000, **self.audit(rng)}

    def base_price(self, n: int, dataareaid: str) -> Decimal:
        """The all-customer sales price of item ``n`` in a legal entity's currency."""
        usd = Decimal(random.Random(f"{self.seed}/price/{n}").randrange(5, 400)) - _CENT
        if currency_of(dataareaid) == "EUR":
            return (usd * Decimal("0.92")).quantize(Decimal(1)) - Decimal("0.05")
        return usd

    def pricedisctable(self) -> Iterator[dict[str, Any]]:
        rng, recid = self.rng("PRICEDISCTABLE"), RECID_BASE["PRICEDISCTABLE"]
        for le in self.entities:
            for n in range(1, self.products + 1):
                base = self.base_price(n, le)
                common = {"DATAAREAID": le, "RELATION": 4, "ITEMCODE": 0, "ITEMRELATION": item_id(n),
                          "CURRENCY": currency_of(le), "UNITID": "ea", "PRICEUNIT": Decimal(1),
                          "FROMDATE": dt.date(2024, 1, 1) + dt.timedelta(days=rng.randrange(90)), "TODATE": NO_DATE}
                recid += 1
                yield {**common, "RECID": recid, "ACCOUNTCODE": 2, "ACCOUNTRELATION": "", "AMOUNT": base,
                       "QUANTITYAMOUNTFROM": Decimal(0), "QUANTITYAMOUNTTO": Decimal(0), **self.audit(rng)}
                recid += 1
                vip = rng.random() < 0.5  # else a quantity break: 5% off from 5 pieces
                yield {**common, "RECID": recid, "ACCOUNTCODE": 1 if vip else 2,
                       "ACCOUNTRELATION": "VIP" if vip else "", "AMOUNT": (base * Decimal("0.9" if vip else "0.95"))
                       .quantize(_CENT), "QUANTITYAMOUNTFROM": Decimal(0 if vip else 5),
                       "QUANTITYAMOUNTTO": Decimal(0), **self.audit(rng)}

    def retailperiodicdiscount(self) -> Iterator[dict[str, Any]]:
        rng, recid = self.rng("RETAILPERIODICDISCOUNT"), RECID_BASE["RETAILPERIODICDISCOUNT"]
        for le in self.entities:
            for n in range(1, self.discounts + 1):
                recid += 1
                pct = rng.choice((5, 10, 15, 20, 25, 30, 40, 50))
                start = dt.date(2024, 1, 1) + dt.timedelta(days=rng.randrange(365))
                end = NO_DATE if rng.random() < 0.2 else start + dt.timedelta(days=rng.randrange(7, 60))
                noun = rng.choice(_words.NOUNS)
                yield {"DATAAREAID": le, "RECID": recid, "OFFERID": f"{le.upper()}-{n:06d}",
                       "NAME": f"{rng.choice(_words.PROMOTIONS)}: {pct}% off {noun.lower()}",
                       "STATUS": 1 if rng.random() < 0.85 else 0, "PERIODICDISCOUNTTYPE": rng.randrange(4),
                       "VALIDFROM": start, "VALIDTO": end, "CURRENCYCODE": currency_of(le),
                       "PRICINGPRIORITYNUMBER": rng.randrange(11),
                       "DESCRIPTION": None if rng.random() < 0.3 else f"{pct}% on selected {noun.lower()}s",
                       **self.audit(rng)}

    # -- parties, customers, staff ------------------------------------------------------
    def people(self) -> Iterator[tuple[str, str, int, str, str]]:
        """(kind, legal entity, n, first name, last name) of every customer then every staff member."""
        per_le = self.customers // len(self.entities)
        extra = self.customers - per_le * len(self.entities)
        for kind, count in (("customer", per_le), ("staff", self.staff)):
            for i, le in enumerate(self.entities):
                rng = self.rng(f"people/{kind}/{le}")
                for n in range(1, count + (1 if kind == "customer" and i < extra else 0) + 1):
                    lang = _lang(le)
                    yield kind, le, n, rng.choice(_words.FIRST_NAMES[lang]), rng.choice(_words.LAST_NAMES[lang])

    def dirpartytable(self) -> Iterator[dict[str, Any]]:
        rng = self.rng("DIRPARTYTABLE")
        for k, (_, le, _, first, last) in enumerate(self.people(), start=1):
            yield {"RECID": RECID_BASE["DIRPARTYTABLE"] + k, "PARTYNUMBER": f"{k:09d}", "NAME": f"{first} {last}",
                   "NAMEALIAS": last[:20], "INSTANCERELATIONTYPE": 2978,
                   "LANGUAGEID": "de" if _lang(le) == "de" else "en-us", **self.audit(rng)}

    def custtable(self) -> Iterator[dict[str, Any]]:
        rng = self.rng("CUSTTABLE")
        for k, (kind, le, n, _, _) in enumerate(self.people(), start=1):
            if kind != "customer":
                continue
            yield {"DATAAREAID": le, "ACCOUNTNUM": account_num(le, n), "PARTY": RECID_BASE["DIRPARTYTABLE"] + k,
                   "CUSTGROUP": rng.choices(("RETAIL", "ONLINE", "WHOLESALE", "STAFF"), (70, 20, 7, 3))[0],
                   "CURRENCY": currency_of(le), "PRICEGROUP": "VIP" if rng.random() < 0.1 else None,
                   "BLOCKED": rng.choices((0, 1, 2), (95, 3, 2))[0], "RECID": RECID_BASE["CUSTTABLE"] + k,
                   "CREDITMAX": Decimal(rng.randrange(0, 50)) * 100, **self.audit(rng)}

    def retailstafftable(self) -> Iterator[dict[str, Any]]:
        rng = self.rng("RETAILSTAFFTABLE")
        for k, (kind, le, n, first, last) in enumerate(self.people(), start=1):
            if kind != "staff":
                continue
            yield {"DATAAREAID": le, "STAFFID": staff_id(n), "NAMEONRECEIPT": f"{first} {last[0]}.",
                   "BLOCKED": rng.random() < 0.05, "PERSON": RECID_BASE["DIRPARTYTABLE"] + k,
                   "RECID": RECID_BASE["RETAILSTAFFTABLE"] + k,
                   "PASSWORDHASH": hashlib.sha256(f"{self.seed}/{le}/{n}".encode()).hexdigest(), **self.audit(rng)}

    # -- channels and terminals ---------------------------------------------------------
    def retailchanneltable(self) -> list[dict[str, Any]]:
        """Topology channels (RECID from ``attributes.recid``), then 2 undeployed stores per legal entity."""
        found = []
        for info in self.topology.channels():
            recid = info.channel.attributes.get("recid")
            found.append((info.channel.id, info.group.legal_entities[0].casefold(),
                          int(recid) if recid is not None else None, info.channel.type))
        top = max([r for _, _, r, _ in found if r is not None], default=5_637_144_576)
        found = [(cid, le, r if r is not None else (top := top + 1), t) for cid, le, r, t in found]
        for le in self.entities:
            for k in (1, 2):
                top += 1
                found.append((f"{le}-store-{900 + k}", le, top, ChannelType.STORE))
        rng, out = self.rng("RETAILCHANNELTABLE"), []
        for n, (cid, le, recid, kind) in enumerate(found, start=1):
            out.append({"DATAAREAID": le, "RECID": recid, "CHANNELTYPE": list(ChannelType).index(kind),
                        "OMOPERATINGUNITID": RECID_BASE["OMOPERATINGUNIT"] + n, "INVENTLOCATION": f"W{n:03d}",
                        "CURRENCY": currency_of(le), "DEFAULTCUSTACCOUNT": account_num(le, 1),
                        "PRICEINCLUDESSALESTAX": currency_of(le) == "EUR", "STORENUMBER": cid, "_type": kind,
                        **self.audit(rng)})
        return out

    def retailterminaltable(self) -> Iterator[dict[str, Any]]:
        registers = {c.channel.id: [r.id for r in c.channel.offline_registers] for c in self.topology.channels()}
        rng, recid = self.rng("RETAILTERMINALTABLE"), RECID_BASE["RETAILTERMINALTABLE"]
        for ch in self.retailchanneltable():
            if ch["_type"] is not ChannelType.STORE:
                continue
            store = ch["STORENUMBER"]
            ids = [f"{store}-pos-{k:02d}" for k in (1, 2, 3)]
            ids += [r for r in registers.get(store, []) if r not in ids]
            for k, terminal in enumerate(ids, start=1):
                recid += 1
                yield {"DATAAREAID": ch["DATAAREAID"], "TERMINALID": terminal, "STORERECID": ch["RECID"],
                       "NAME": f"Register {k}", "HARDWAREPROFILE": rng.choice(("STANDARD", "EXPRESS", "MPOS")),
                       "RECID": recid, **self.audit(rng)}


def generate(topology: Topology, scale: float = 1.0, seed: int = 42) -> dict[str, Rows]:
    """Rows of every download table of :data:`~cdx.demo.retail_schema.HQ_TABLES`, by table name,
    as tuples in the definition's column order. Pure: depends on the arguments only."""
    gen = _Gen(topology, scale, seed)
    out: dict[str, Rows] = {}
    for name in ("ECORESPRODUCT", "INVENTTABLE", "PRICEDISCTABLE", "RETAILPERIODICDISCOUNT", "DIRPARTYTABLE",
                 "CUSTTABLE", "RETAILSTAFFTABLE", "RETAILCHANNELTABLE", "RETAILTERMINALTABLE"):
        columns = HQ_TABLES[name].column_names
        out[name] = [tuple(row[c] for c in columns) for row in getattr(gen, name.lower())()]
    return out


def seed_hq(conn: Connection, dialect: Dialect, topology: Topology, scale: float = 1.0,
            seed: int = 42) -> dict[str, int]:
    """Create the topology's HQ tables (if missing) and upsert the generated rows of its download
    tables in one transaction. Returns rows written per table (``"dbo.INVENTTABLE"``: 10000, ...)."""
    tables = create_hq_tables(conn, dialect, topology)
    rows = generate(topology, scale, seed)
    counts: dict[str, int] = {}
    with dialect.transaction(conn):
        for ref in tables:
            data = rows.get(ref.name.upper())
            if data is None:
                continue
            table = HQ_TABLES[ref.name.upper()]
            dialect.upsert_rows(conn, ref.schema, table.name, table.column_names, table.primary_key, data)
            counts[str(ref)] = len(data)
    return counts
