"""Customers, sales orders, inventory receiving and counts, cross-store returns: each operation's rules."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from tests.realtime.helpers import add_order, insert_sale


def test_customers_create_update_search(api: Any) -> None:
    a, other_le = api("store-0001-pos-01"), api("store-1001")
    r = a.post("/customers", {"name": "Ada Lovelace", "currency": "USD", "customer_group": "RETAIL"})
    assert r.status_code == 201, r.text
    customer = r.json()
    assert customer["account"].startswith("USRT-R") and customer["legal_entity"] == "usrt"
    assert a.get(f"/customers/{customer['account']}").json() == customer
    r = a.send("PATCH", f"/customers/{customer['account']}", {"name": "Ada King", "blocked": 1})
    assert r.status_code == 200 and r.json()["name"] == "Ada King" and r.json()["blocked"] == 1
    found = a.get("/customers", name="ada k").json()["customers"]
    assert [c["account"] for c in found] == [customer["account"]]
    assert a.get("/customers", name="%").json()["customers"] == []
    assert other_le.get(f"/customers/{customer['account']}").status_code == 404
    second = a.post("/customers", {"name": "Grace Hopper", "currency": "USD"}).json()
    assert second["recid"] != customer["recid"] and second["account"] != customer["account"]


def test_sales_orders(api: Any) -> None:
    a, b = api("online-us"), api("store-0002")
    r = a.post("/sales-orders", {"customer_account": "USRT-000002",
                                 "lines": [{"item_id": "000001", "quantity": "2", "price": "9.99"}]})
    assert r.status_code == 201, r.text
    order = r.json()
    assert order["status"] == "open" and order["total"] == "19.98"
    r = a.send("PUT", f"/sales-orders/{order['order_id']}/lines",
               {"lines": [{"item_id": "000001", "quantity": "1", "price": "9.99"},
                          {"item_id": "000002", "quantity": "1.5", "price": "2"}]})
    assert r.status_code == 200 and len(r.json()["lines"]) == 2 and r.json()["total"] == "12.99"
    assert [o["order_id"] for o in b.get("/sales-orders", customer_account="USRT-000002").json()["orders"]] == [
        order["order_id"]]
    r = b.post(f"/sales-orders/{order['order_id']}/pickup")
    assert r.status_code == 200 and r.json()["status"] == "picked_up"
    assert b.post(f"/sales-orders/{order['order_id']}/complete").status_code == 409
    r = a.send("PUT", f"/sales-orders/{order['order_id']}/lines",
               {"lines": [{"item_id": "000001", "quantity": "1", "price": "1"}]})
    assert r.status_code == 409 and r.json()["error"] == "order_closed"
    assert api("store-1001").get(f"/sales-orders/{order['order_id']}").status_code == 404


def test_receiving_partial_and_over_receipt(api: Any, hq_dsn: tuple[str, str]) -> None:
    add_order(*hq_dsn, "purchase", "PO-1", "store-0001", [("000001", Decimal(10)), ("000002", Decimal(4))])
    a = api("store-0001")
    r = a.post("/inventory/receipts", {"order_type": "purchase", "order_id": "PO-1",
                                        "lines": [{"line_number": 1, "quantity": "6"}]})
    assert r.status_code == 201, r.text
    assert r.json()["lines"][0]["received"] == "6.000"
    r = a.post("/inventory/receipts", {"order_type": "purchase", "order_id": "PO-1",
                                        "lines": [{"line_number": 2, "quantity": "4"}, {"line_number": 1,
                                                                                         "quantity": "4.001"}]})
    assert r.status_code == 409 and r.json()["error"] == "over_receipt"
    lines = a.get("/inventory/orders/purchase/PO-1").json()["lines"]
    assert [x["received"] for x in lines] == ["6.000", "0.000"], "a refused receipt applies nothing"
    r = a.post("/inventory/receipts", {"order_type": "purchase", "order_id": "PO-1",
                                        "lines": [{"line_number": 1, "quantity": "4"}, {"line_number": 2,
                                                                                         "quantity": "4"}]})
    assert r.status_code == 201 and [x["received"] for x in r.json()["lines"]] == ["10.000", "4.000"]
    assert api("store-0002").get("/inventory/orders/purchase/PO-1").status_code == 404
    r = a.post("/inventory/receipts", {"order_type": "transfer", "order_id": "PO-1",
                                        "lines": [{"line_number": 1, "quantity": "1"}]})
    assert r.status_code == 404


def test_count_journal(api: Any) -> None:
    a = api("store-0002")
    r = a.post("/inventory/count-journals", {"lines": [{"item_id": "000001", "location": "SHELF-1",
                                                         "counted_quantity": "0"},
                                                        {"item_id": "000002", "location": "BACK",
                                                         "counted_quantity": "12.5"}]})
    assert r.status_code == 201, r.text
    journal = r.json()
    assert journal["status"] == "submitted" and journal["lines"][1]["counted_quantity"] == "12.500"
    assert a.get(f"/inventory/count-journals/{journal['journal_id']}").json() == journal


def test_cross_store_return_is_tracked_at_hq(api: Any, hq_dsn: tuple[str, str]) -> None:
    insert_sale(*hq_dsn, store="store-0001", terminal="store-0001-pos-02", receipt="store-0001-pos-02-00000001",
                lines=[("000001", Decimal(2), Decimal("10.00")), ("000002", Decimal(1), Decimal("5.00"))])
    seattle, online = api("store-0002"), api("online-us")
    sale = seattle.get("/transactions/store-0001-pos-02-00000001").json()
    assert sale["store"] == "store-0001" and sale["lines"][0]["returnable_quantity"] == "2.000"
    r = seattle.post("/returns", {"receipt_id": "store-0001-pos-02-00000001",
                                  "lines": [{"line_number": 1, "quantity": "1"}]})
    assert r.status_code == 201, r.text
    assert r.json()["total_refund"] == "10.00"
    r = online.post("/returns", {"receipt_id": "store-0001-pos-02-00000001",
                                 "lines": [{"line_number": 2, "quantity": "1"}, {"line_number": 1, "quantity": "2"}]})
    assert r.status_code == 409 and r.json()["error"] == "already_returned"
    sale = online.get("/transactions/store-0001-pos-02-00000001").json()
    assert [x["returned_quantity"] for x in sale["lines"]] == ["1.000", "0.000"]
    assert online.post("/returns", {"receipt_id": "store-0001-pos-02-00000001",
                                    "lines": [{"line_number": 1, "quantity": "1"}]}).status_code == 201
    assert api("store-1001").get("/transactions/store-0001-pos-02-00000001").status_code == 404
