"""Gift cards, loyalty cards and credit memos: the rules of each operation (SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any


def issue_card(a: Any, amount: str = "50.00", **extra: Any) -> str:
    r = a.post("/gift-cards", {"amount": amount, "currency": "USD", **extra})
    assert r.status_code == 201, r.text
    return str(r.json()["number"])


def test_gift_card_lifecycle_across_stores(api: Any) -> None:
    houston, seattle = api("store-0001"), api("store-0002")
    number = issue_card(houston, "50.00")
    assert len(number) == 19 and number.isdigit()
    assert seattle.get(f"/gift-cards/{number}").json()["balance"] == "50.00"
    r = seattle.post(f"/gift-cards/{number}/redeem", {"amount": "20.50"})
    assert r.status_code == 200 and r.json()["balance"] == "29.50"
    assert r.json()["transaction"]["operation"] == "redeem"
    r = houston.post(f"/gift-cards/{number}/add-value", {"amount": 10})
    assert r.json()["balance"] == "39.50"
    r = houston.post(f"/gift-cards/{number}/redeem", {"amount": "39.51"})
    assert r.status_code == 409 and r.json()["error"] == "insufficient_balance"
    r = houston.post(f"/gift-cards/{number}/redeem", {"amount": "1", "currency": "EUR"})
    assert r.status_code == 409 and r.json()["error"] == "currency_mismatch"
    r = houston.post(f"/gift-cards/{number}/void")
    assert r.status_code == 200 and r.json()["status"] == "void" and r.json()["balance"] == "0.00"
    assert r.json()["transaction"]["amount"] == "39.50"
    r = houston.post(f"/gift-cards/{number}/redeem", {"amount": "1"})
    assert r.status_code == 409 and r.json()["error"] == "giftcard_void"
    assert houston.post(f"/gift-cards/{number}/add-value", {"amount": "1"}).status_code == 409


def test_gift_card_numbers_and_validation(api: Any) -> None:
    a = api("store-0001")
    assert issue_card(a, "5", card_number="4000123412341234") == "4000123412341234"
    r = a.post("/gift-cards", {"amount": "5", "currency": "USD", "card_number": "4000123412341234"})
    assert r.status_code == 409 and r.json()["error"] == "already_exists"
    assert a.get("/gift-cards/9999888877776666").status_code == 404
    for bad, field in (({"amount": "-1", "currency": "USD"}, "body.amount"),
                       ({"amount": "1.001", "currency": "USD"}, "body.amount"),
                       ({"amount": "1", "currency": "usd"}, "body.currency"),
                       ({"amount": "1", "currency": "USD", "extra": 1}, "body.extra")):
        r = a.post("/gift-cards", bad)
        assert r.status_code == 422, r.text
        assert field in [f["field"] for f in r.json()["fields"]]
    r = a.client.post(a.url("/gift-cards"), json={"amount": "1", "currency": "USD"}, headers=a.headers())
    assert r.status_code == 422 and r.json()["fields"][0]["field"] == "header.Idempotency-Key"


def test_legal_entities_are_separate(api: Any) -> None:
    number = issue_card(api("store-0001"))
    assert api("store-1001").get(f"/gift-cards/{number}").status_code == 404


def test_loyalty_points(api: Any) -> None:
    a = api("store-0001")
    r = a.post("/loyalty-cards", {"customer_account": "USRT-000001"})
    assert r.status_code == 201 and r.json()["balance"] == 0
    number = r.json()["number"]
    assert a.post(f"/loyalty-cards/{number}/earn", {"points": 120}).json()["balance"] == 120
    r = a.post(f"/loyalty-cards/{number}/redeem", {"points": 121})
    assert r.status_code == 409 and r.json()["error"] == "insufficient_balance"
    assert a.post(f"/loyalty-cards/{number}/redeem", {"points": 100}).json()["balance"] == 20
    assert a.get(f"/loyalty-cards/{number}").json()["balance"] == 20
    found = a.get("/loyalty-cards", customer_account="USRT-000001").json()["cards"]
    assert [c["number"] for c in found] == [number]
    assert a.post(f"/loyalty-cards/{number}/earn", {"points": 1.5}).status_code == 422


def test_credit_memo(api: Any) -> None:
    a, b = api("store-0001"), api("online-us")
    r = a.post("/credit-memos", {"amount": "12.34", "currency": "USD"})
    assert r.status_code == 201
    number = r.json()["number"]
    assert b.post(f"/credit-memos/{number}/redeem", {"amount": "12.35"}).status_code == 409
    assert b.post(f"/credit-memos/{number}/redeem", {"amount": "10"}).json()["balance"] == "2.34"
    assert a.get(f"/credit-memos/{number}").json()["balance"] == "2.34"
