"""POS simulator: sales transactions written into a channel or offline-register database.

:func:`write_sales` inserts ``n`` transactions into the channel-side upload tables created by
:func:`~cdx.demo.retail_schema.create_channel_upload_tables` (``ax.RETAILTRANSACTIONTABLE``,
``ax.RETAILTRANSACTIONSALESTRANS``, ``ext.CONTOSORETAILTRANSACTIONTABLE``): a header, 1-5
lines and, for about 40% of them, the extension row; each transaction in its own database
transaction. ``REPLICATIONCOUNTERFROMORIGIN`` is left to the database (SQLite: ``MAX + 1``
in the insert). ``TRANSACTIONID`` is ``<terminal>-<8-digit sequence>``, continuing after the
terminal's highest existing id: one writer per terminal, as on a real register.

:func:`terminal_for` picks the channel RECID, store, terminal and legal entity a channel or
register id writes with under a topology; :func:`catalog` reads item prices from a seeded HQ.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from cdx.demo.retail_schema import CHANNEL_UPLOAD_TABLES, HQ_SCHEMA, insert_sql
from cdx.demo.seed import account_num, currency_of, item_id, staff_id
from cdx.dialects import Connection, Dialect
from cdx.errors import ConfigError
from cdx.topology import ChannelType, Topology

__all__ = ["Sales", "Terminal", "catalog", "terminal_for", "write_sales"]

HEADER = ("ax", "RETAILTRANSACTIONTABLE")
LINES = ("ax", "RETAILTRANSACTIONSALESTRANS")
EXTENSION = ("ext", "CONTOSORETAILTRANSACTIONTABLE")
_CENT = Decimal("0.01")
_TAX = {"USD": (Decimal("0.0825"), False), "EUR": (Decimal("0.19"), True)}
"""Currency -> (sales tax rate, whether prices include it)."""


@dataclass(frozen=True)
class Terminal:
    """Who writes: ``CHANNEL`` (the channel's RECID), ``STORE``, ``TERMINAL``, ``DATAAREAID``."""

    channel: int
    store: str
    terminal: str
    dataareaid: str

    @property
    def currency(self) -> str:
        return currency_of(self.dataareaid)


@dataclass
class Sales:
    """What :func:`write_sales` wrote."""

    transaction_ids: list[str] = field(default_factory=list)
    lines: int = 0
    extensions: int = 0


def terminal_for(topology: Topology, database_id: str) -> Terminal:
    """The terminal writing into a channel's or offline register's database, matching the seeded
    ``RETAILTERMINALTABLE``: a register writes as itself; a store channel database as its first
    ``<channel>-pos-NN`` terminal that is not an offline register; an online channel as ``<channel>-web``."""
    group = topology.group_of_channel(database_id)
    channel = next((c.channel for c in topology.channels()
                    if c.channel.id == database_id or database_id in {r.id for r in c.channel.offline_registers}),
                   None)
    if group is None or channel is None:
        raise ConfigError(f"no channel or offline register {database_id!r} in the topology")
    recid = channel.attributes.get("recid")
    if recid is None:
        raise ConfigError(f"channel {channel.id!r} has no 'recid' attribute")
    registers = {r.id for r in channel.offline_registers}
    if database_id in registers:
        terminal = database_id
    elif channel.type is ChannelType.STORE:
        terminal = next(t for t in (f"{channel.id}-pos-{k:02d}" for k in range(1, 99)) if t not in registers)
    else:
        terminal = f"{channel.id}-web"
    return Terminal(int(recid), channel.id, terminal, group.legal_entities[0].casefold())


def catalog(hq_conn: Connection, hq_dialect: Dialect, dataareaid: str, *, schema: str = HQ_SCHEMA
            ) -> list[tuple[str, Decimal]]:
    """``(ITEMID, all-customer base price)`` of a legal entity's seeded items, by ITEMID."""
    d = hq_dialect
    q = d.quote_ident
    with d.transaction(hq_conn):
        cur = hq_conn.cursor()
        cur.execute(f"SELECT {q('ITEMRELATION')}, {q('AMOUNT')} FROM {d.qualified(schema, 'PRICEDISCTABLE')}"
                    f" WHERE {q('DATAAREAID')} = {d.placeholder} AND {q('ACCOUNTCODE')} = 2 AND {q('ITEMCODE')} = 0"
                    f" AND {q('QUANTITYAMOUNTFROM')} = 0 ORDER BY {q('ITEMRELATION')}, {q('RECID')}", (dataareaid,))
        found = cur.fetchall()
    prices: dict[str, Decimal] = {}
    for item, amount in found:
        prices.setdefault(str(item), Decimal(str(amount)))
    return list(prices.items())


def _last_seq(conn: Connection, dialect: Dialect, t: Terminal) -> int:
    q, p = dialect.quote_ident, dialect.placeholder
    cur = conn.cursor()
    cur.execute(f"SELECT MAX({q('TRANSACTIONID')}) FROM {dialect.qualified(*HEADER)} WHERE {q('DATAAREAID')} = {p}"
                f" AND {q('CHANNEL')} = {p} AND {q('STORE')} = {p} AND {q('TERMINAL')} = {p}",
                (t.dataareaid, t.channel, t.store, t.terminal))
    row = cur.fetchone()
    last = row[0] if row else None
    return int(str(last).rsplit("-", 1)[1]) if last else 0


def _row(dialect: Dialect, values: dict[str, Any]) -> list[Any]:
    return [dialect.encode(v) for v in values.values()]


def write_sales(conn: Connection, dialect: Dialect, channel_id: int, store: str, terminal: str, n: int,
                rng: random.Random, *, dataareaid: str = "usrt", items: Sequence[tuple[str, Decimal]] | None = None,
                customers: int = 2_500, staff: int = 50, extension_share: float = 0.4) -> Sales:
    """Insert ``n`` sales transactions of one terminal, each in its own database transaction.

    ``channel_id`` is the channel's RECID (the ``CHANNEL`` column). Items and prices come from
    ``items`` (e.g. :func:`catalog`) or are made up; customer and staff ids follow the seeded
    numbering (the first ``customers``/``staff`` of ``dataareaid``). Needs the upload tables.
    """
    t = Terminal(channel_id, store, terminal, dataareaid)
    rate, included = _TAX.get(t.currency, _TAX["USD"])
    key = {"DATAAREAID": t.dataareaid, "CHANNEL": t.channel, "STORE": t.store, "TERMINAL": t.terminal}
    header_cols = [*key, "TRANSACTIONID", "TYPE", "CUSTACCOUNT", "STAFF", "CURRENCY", "GROSSAMOUNT", "NETAMOUNT",
                   "TRANSDATE", "TRANSTIME", "CREATEDDATETIME"]
    line_cols = [*key, "TRANSACTIONID", "LINENUM", "ITEMID", "QTY", "PRICE", "NETAMOUNT", "TAXAMOUNT", "DISCAMOUNT",
                 "TRANSDATE", "CREATEDDATETIME"]
    ext_cols = [*key, "TRANSACTIONID", "CONTOSORETAILSEATNUMBER", "CONTOSORETAILSERVERSTAFFID"]
    header_sql = insert_sql(dialect, HEADER[0], CHANNEL_UPLOAD_TABLES[HEADER[1]], header_cols)
    line_sql = insert_sql(dialect, LINES[0], CHANNEL_UPLOAD_TABLES[LINES[1]], line_cols)
    ext_sql = insert_sql(dialect, EXTENSION[0], CHANNEL_UPLOAD_TABLES[EXTENSION[1]], ext_cols)
    out = Sales()
    with dialect.transaction(conn):
        seq = _last_seq(conn, dialect, t)
    for _ in range(n):
        seq += 1
        txn = f"{t.terminal}-{seq:08d}"
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        cashier = staff_id(rng.randrange(1, staff + 1))
        lines, net_total, tax_total = [], Decimal(0), Decimal(0)
        for linenum in range(1, rng.randint(1, 5) + 1):
            if items:
                item, price = items[rng.randrange(len(items))]
            else:
                item, price = item_id(rng.randrange(1, 5_001)), Decimal(rng.randrange(5, 400)) - _CENT
            qty = Decimal(rng.choices((1, 2, 3), (80, 15, 5))[0])
            disc = (price * qty * Decimal("0.1")).quantize(_CENT) if rng.random() < 0.1 else Decimal(0)
            net = price * qty - disc
            tax = (net * rate / (1 + rate) if included else net * rate).quantize(_CENT)
            net_total, tax_total = net_total + net, tax_total + tax
            lines.append(_row(dialect, {**key, "TRANSACTIONID": txn, "LINENUM": linenum, "ITEMID": item, "QTY": qty,
                                        "PRICE": price, "NETAMOUNT": net, "TAXAMOUNT": tax, "DISCAMOUNT": disc,
                                        "TRANSDATE": now.date(), "CREATEDDATETIME": now}))
        customer = account_num(t.dataareaid, rng.randrange(1, customers + 1)) if rng.random() < 0.3 else None
        header = {**key, "TRANSACTIONID": txn, "TYPE": 2, "CUSTACCOUNT": customer, "STAFF": cashier,
                  "CURRENCY": t.currency, "GROSSAMOUNT": net_total if included else net_total + tax_total,
                  "NETAMOUNT": net_total - tax_total if included else net_total, "TRANSDATE": now.date(),
                  "TRANSTIME": now.hour * 3600 + now.minute * 60 + now.second, "CREATEDDATETIME": now}
        with dialect.transaction(conn):
            cur = conn.cursor()
            cur.execute(header_sql, _row(dialect, header))
            cur.executemany(line_sql, lines)
            if rng.random() < extension_share:
                cur.execute(ext_sql, _row(dialect, {**key, "TRANSACTIONID": txn,
                                                    "CONTOSORETAILSEATNUMBER": rng.randint(1, 40),
                                                    "CONTOSORETAILSERVERSTAFFID": cashier}))
                out.extensions += 1
        out.transaction_ids.append(txn)
        out.lines += len(lines)
    return out
