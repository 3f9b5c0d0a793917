from __future__ import annotations

def test_issue_and_redeem(api) -> None:
    a = api("store-0001")
    r = a.post("/gift-cards", {"amount": "50.00", "currency": "USD"})
    assert r.status_code == 201, r.text
    number = r.json()["number"]
    r = a.post(f"/gift-cards/{number}/redeem", {"amount": "20"})
    assert r.status_code == 200, r.text
    assert r.json()["balance"] == "30.00"
