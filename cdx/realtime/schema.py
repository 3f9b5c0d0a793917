"""The service's own HQ tables (schema ``rts``; SQLite ``rts_<TABLE>``), created by ``cdx hq init-realtime``.

Amounts are BIGINT cents and quantities BIGINT thousandths (``cdx.realtime.units``); times are
ISO-8601 UTC text. Master data the service changes (customers) lives in the tables capture
tracks, not here. :func:`create_tables` is idempotent and runs in one transaction.
"""

from __future__ import annotations

from cdx.dialects import ColumnInfo, Connection, Dialect, LogicalType
from cdx.realtime.db import SCHEMA


def _s(name: str, length: int | None, nullable: bool = False) -> ColumnInfo:
    return ColumnInfo(name, LogicalType.STRING, nullable=nullable, length=length)


def _i(name: str) -> ColumnInfo:
    return ColumnInfo(name, LogicalType.INT32, nullable=False)


def _n(name: str) -> ColumnInfo:
    return ColumnInfo(name, LogicalType.INT64, nullable=False)


_LE, _AT = _s("DATAAREAID", 8), _s("CREATEDAT", 32)
_WHO = _s("PRINCIPAL", 60)


_ACCOUNT = ([_s("NUMBER", 40), _LE, _s("CURRENCY", 3), _n("BALANCE"), _s("STATUS", 10),
             _s("CUSTACCOUNT", 20, nullable=True), _s("ISSUEDBY", 60), _AT, _s("MODIFIEDAT", 32)], ["NUMBER"])
"""Gift cards, loyalty cards, credit memos: a number with a balance in one legal entity."""


TABLES: dict[str, tuple[list[ColumnInfo], list[str]]] = {
    "IDEMPOTENCY": ([_WHO, _s("IDEMKEY", 100), _s("REQUESTHASH", 64), _i("STATUSCODE"), _s("RESPONSE", None), _AT],
                    ["PRINCIPAL", "IDEMKEY"]),
    "NUMBERSEQ": ([_s("NAME", 40), _n("LASTVAL")], ["NAME"]),
    "GIFTCARD": _ACCOUNT,
    "LOYALTYCARD": _ACCOUNT,
    "CREDITMEMO": _ACCOUNT,
    "BALANCETRANS": ([_s("ENTRYID", 32), _s("KIND", 12), _s("NUMBER", 40), _LE, _s("OPERATION", 12),
                      _n("AMOUNT"), _n("BALANCEAFTER"), _WHO, _s("CHANNEL", 60), _s("IDEMKEY", 100), _AT],
                     ["ENTRYID"]),
    "SALESORDER": ([_s("ORDERID", 20), _LE, _s("CHANNEL", 60), _s("CUSTACCOUNT", 20), _s("STATUS", 12),
                    _s("CREATEDBY", 60), _AT, _s("MODIFIEDAT", 32)], ["ORDERID"]),
    "SALESLINE": ([_s("ORDERID", 20), _i("LINENUM"), _s("ITEMID", 20), _n("QTY"), _n("PRICE")],
                  ["ORDERID", "LINENUM"]),
    "INVENTORDERLINE": ([_s("ORDERTYPE", 10), _s("ORDERID", 20), _i("LINENUM"), _LE, _s("RECEIVINGCHANNEL", 60),
                         _s("ITEMID", 20), _n("QTYORDERED"), _n("QTYRECEIVED")], ["ORDERTYPE", "ORDERID", "LINENUM"]),
    "INVENTRECEIPT": ([_s("RECEIPTID", 20), _s("ORDERTYPE", 10), _s("ORDERID", 20), _i("LINENUM"), _n("QTY"),
                       _s("CHANNEL", 60), _WHO, _AT], ["RECEIPTID", "LINENUM"]),
    "COUNTJOURNAL": ([_s("JOURNALID", 20), _LE, _s("CHANNEL", 60), _s("STATUS", 12), _WHO, _AT], ["JOURNALID"]),
    "COUNTLINE": ([_s("JOURNALID", 20), _i("LINENUM"), _s("ITEMID", 20), _s("LOCATION", 20), _n("COUNTEDQTY")],
                  ["JOURNALID", "LINENUM"]),
    "RETURNEDQTY": ([_LE, _s("STORE", 40), _s("TERMINAL", 60), _s("TRANSACTIONID", 80), _i("LINENUM"),
                     _n("QTYRETURNED")], ["DATAAREAID", "STORE", "TERMINAL", "TRANSACTIONID", "LINENUM"]),
    "RETURNLINE": ([_s("RETURNID", 20), _i("LINENUM"), _LE, _s("ORIGSTORE", 40), _s("ORIGTERMINAL", 60),
                    _s("ORIGTRANSACTIONID", 80), _i("ORIGLINENUM"), _s("ITEMID", 20), _n("QTY"), _n("AMOUNT"),
                    _s("CHANNEL", 60), _WHO, _AT], ["RETURNID", "LINENUM"]),
}
"""Every service table: ``name -> (columns, primary key)``."""


def create_tables(conn: Connection, dialect: Dialect) -> list[str]:
    """Create every missing service table in one transaction (existing tables are left alone).

    Returns the tables' display names."""
    with dialect.transaction(conn):
        dialect.ensure_schema(conn, dialect.physical_table(SCHEMA, "NUMBERSEQ")[0])
        for name, (columns, key) in TABLES.items():
            dialect.create_table(conn, SCHEMA, name, columns, key)
    return [f"{SCHEMA}.{name}" for name in TABLES]


def missing_tables(conn: Connection, dialect: Dialect) -> list[str]:
    """The service tables that do not exist yet (empty when ``init-realtime`` has run)."""
    try:
        return [f"{SCHEMA}.{n}" for n in TABLES if not dialect.table_exists(conn, SCHEMA, n)]
    finally:
        conn.rollback()
