"""Test helpers: sales at HQ as the upload sink leaves them, purchase/transfer orders as HQ creates them."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from cdx.demo.retail_schema import HQ_TABLES
from cdx.dialects import get_dialect
from cdx.realtime.inventory import add_order_lines


def insert_sale(dialect_name: str, dsn: str, *, store: str, terminal: str, receipt: str,
                lines: list[tuple[str, Decimal, Decimal]], dataareaid: str = "usrt", channel: int = 5637144576,
                counter: int = 1) -> None:
    """A sale (item, quantity, price per line) in HQ's dbo.RETAILTRANSACTION* tables."""
    d = get_dialect(dialect_name)
    conn = d.connect(dsn)
    today = dt.date.today()
    key = {"DATAAREAID": dataareaid, "CHANNEL": channel, "STORE": store, "TERMINAL": terminal,
           "TRANSACTIONID": receipt}
    total = sum((q * p for _, q, p in lines), Decimal(0))
    header = {**key, "TYPE": 2, "CUSTACCOUNT": None, "STAFF": "000001", "CURRENCY": "USD", "GROSSAMOUNT": total,
              "NETAMOUNT": total, "TRANSDATE": today, "TRANSTIME": 0, "CONTOSORETAILSEATNUMBER": None,
              "CONTOSORETAILSERVERSTAFFID": None, "REPLICATIONCOUNTERFROMORIGIN": counter, "CDXORIGINID": store}
    rows = [{**key, "LINENUM": n, "ITEMID": item, "QTY": qty, "PRICE": price, "NETAMOUNT": qty * price,
             "TAXAMOUNT": Decimal(0), "DISCAMOUNT": Decimal(0), "TRANSDATE": today,
             "REPLICATIONCOUNTERFROMORIGIN": counter * 100 + n, "CDXORIGINID": store}
            for n, (item, qty, price) in enumerate(lines, start=1)]
    try:
        with d.transaction(conn):
            for table, data in (("RETAILTRANSACTIONTABLE", [header]), ("RETAILTRANSACTIONSALESTRANS", rows)):
                cols = HQ_TABLES[table].column_names
                d.upsert_rows(conn, "dbo", table, cols, HQ_TABLES[table].primary_key,
                              [[d.encode(r.get(c)) for c in cols] for r in data])
    finally:
        conn.close()


def add_order(dialect_name: str, dsn: str, order_type: str, order_id: str, channel: str,
              lines: list[tuple[str, Decimal]], dataareaid: str = "usrt") -> None:
    d = get_dialect(dialect_name)
    conn = d.connect(dsn)
    try:
        add_order_lines(conn, d, order_type, order_id, dataareaid, channel, lines)
    finally:
        conn.close()
