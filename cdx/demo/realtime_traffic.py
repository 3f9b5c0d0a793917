"""The demo's Real-time Service scenario: what registers ask HQ while the customer waits.

:class:`RealtimeScenario` runs beside the POS traffic against a real ``cdx realtime serve``
process, as registers would: it issues gift cards in one store and redeems them there and in
another store, creates a customer at a register, and returns an item sold in another store.
Every call carries an ``Idempotency-Key`` and is retried with it while the service answers 503 or
cannot be reached. :meth:`RealtimeScenario.verify` then checks the balances, the returned
quantity tracked at HQ (and that a second return of it is refused), and that the new customer is
in every channel and register database of the groups that receive its legal entity.
"""

from __future__ import annotations

import json
import secrets
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid
from contextlib import closing
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from cdx.dialects import connect, get_dialect
from cdx.topology import Topology

ISSUER, REDEEMER, CUSTOMER_REGISTER, RETURNER = "store-0001", "store-0002", "store-0001-pos-01", "store-0002"
SOLD_AT = "store-0001"


def env_var(principal: str) -> str:
    return "CDX_RT_KEY_" + principal.upper().replace("-", "_")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_credentials(run_dir: Path, principals: list[str], env: dict[str, str]) -> tuple[Path, dict[str, str]]:
    """Random API keys for ``principals`` (into ``env``) and a realtime.yaml referring to them."""
    keys = {p: secrets.token_urlsafe(24) for p in principals}
    env.update({env_var(p): k for p, k in keys.items()})
    path = run_dir / "realtime.yaml"
    path.write_text("credentials:\n" + "".join(f"  - {{principal: {p}, api_key: '${{{env_var(p)}}}'}}\n"
                                               for p in principals))
    return path, keys


@dataclass
class RealtimeScenario:
    url: str
    keys: dict[str, str]
    cards: dict[str, Decimal] = field(default_factory=dict)
    customer: str | None = None
    returned: tuple[str, int] | None = None
    log: list[str] = field(default_factory=list)

    def call(self, principal: str, channel: str, method: str, path: str, body: Any = None,
             key: str | None = None, timeout: float = 180.0) -> tuple[int, Any]:
        """One request as ``principal``, retried with the same Idempotency-Key through 503s and outages."""
        headers = {"Authorization": f"Bearer {self.keys[principal]}", "Content-Type": "application/json"}
        if method != "GET":
            headers["Idempotency-Key"] = key or uuid.uuid4().hex
        data = json.dumps(body).encode() if body is not None else None
        deadline = time.monotonic() + timeout
        while True:
            request = urllib.request.Request(f"{self.url}/v1/channels/{channel}{path}", data, headers, method=method)
            try:
                with urllib.request.urlopen(request, timeout=30) as answer:
                    return answer.status, json.loads(answer.read())
            except urllib.error.HTTPError as exc:
                if exc.code != 503 or time.monotonic() > deadline:
                    return exc.code, json.loads(exc.read() or b"{}")
            except OSError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.5)

    def run(self, stop: threading.Event, sold_receipts: list[str]) -> None:
        """Gift cards and a customer now; a cross-store return once a sale of SOLD_AT is at HQ."""
        for _ in range(3):
            status, card = self.call(ISSUER, ISSUER, "POST", "/gift-cards", {"amount": "50.00", "currency": "USD"})
            if status == 201:
                self.cards[card["number"]] = Decimal("50.00")
        for number in list(self.cards):
            for who, amount in ((ISSUER, Decimal("12.50")), (REDEEMER, Decimal("20.00"))):
                status, _ = self.call(who, who, "POST", f"/gift-cards/{number}/redeem", {"amount": str(amount)})
                if status == 200:
                    self.cards[number] -= amount
        status, body = self.call(CUSTOMER_REGISTER, ISSUER, "POST", "/customers",
                                 {"name": "Demo Walkin", "currency": "USD"})
        self.customer = body.get("account") if status == 201 else None
        self.log.append(f"gift cards issued in {ISSUER}, redeemed in {ISSUER} and {REDEEMER}: {len(self.cards)};"
                        f" customer {self.customer} created at register {CUSTOMER_REGISTER}")
        while not stop.is_set() and self.returned is None:
            self._try_return([r for r in sold_receipts if r.startswith(f"{SOLD_AT}-pos")])
            stop.wait(1.0)

    def _try_return(self, receipts: list[str]) -> None:
        for receipt in receipts[:20]:
            status, sale = self.call(RETURNER, RETURNER, "GET", f"/transactions/{receipt}")
            if status != 200:
                continue
            line = sale["lines"][0]
            status, _ = self.call(RETURNER, RETURNER, "POST", "/returns", {
                "receipt_id": receipt, "lines": [{"line_number": line["line_number"], "quantity": line["quantity"]}]})
            if status == 201:
                self.returned = (receipt, int(line["line_number"]))
                self.log.append(f"returned line {line['line_number']} of {receipt} (sold in {SOLD_AT}) at {RETURNER}")
                return

    def verify(self, topology: Topology) -> tuple[bool, list[str]]:
        """Balances, the HQ-tracked return, the customer everywhere: (ok, one line per check)."""
        lines, ok = list(self.log), bool(self.cards)
        for number, expected in self.cards.items():
            _, card = self.call(ISSUER, ISSUER, "GET", f"/gift-cards/{number}")
            ok &= Decimal(card.get("balance", "-1")) == expected
        lines.append(f"gift card balances: {'as expected' if ok else 'WRONG'} ({len(self.cards)} cards)")
        ok &= self._verify_return(lines)
        ok &= self._verify_customer(topology, lines)
        return ok, lines

    def _verify_return(self, lines: list[str]) -> bool:
        if self.returned is None:
            lines.append("cross-store return: none made (no sale of the selling store reached HQ)")
            return False
        receipt, number = self.returned
        _, sale = self.call(ISSUER, ISSUER, "GET", f"/transactions/{receipt}")
        line = next(x for x in sale["lines"] if x["line_number"] == number)
        again, _ = self.call(ISSUER, ISSUER, "POST", "/returns", {
            "receipt_id": receipt, "lines": [{"line_number": number, "quantity": line["quantity"]}]})
        ok = line["returned_quantity"] == line["quantity"] and again == 409
        lines.append(f"cross-store return: HQ tracks {line['returned_quantity']} returned of {line['quantity']};"
                     f" a second return in {ISSUER} got {again} ({'as expected' if ok else 'WRONG'})")
        return ok

    def _verify_customer(self, topology: Topology, lines: list[str]) -> bool:
        group = topology.group_of_channel(ISSUER)
        entities = {e.casefold() for e in group.legal_entities} if group else set()
        owners = [info.owner_id for info in topology.databases()
                  if (g := topology.group_of_channel(info.owner_id)) is not None
                  and entities & {e.casefold() for e in g.legal_entities}]
        missing = [o for o in owners if self.customer is None or self.customer not in _accounts(topology, o)]
        lines.append(f"customer {self.customer}: in {len(owners) - len(missing)} of {len(owners)} databases of its"
                     f" legal entity" + (f", missing in {missing}" if missing else ""))
        return self.customer is not None and not missing


def _accounts(topology: Topology, owner: str) -> set[str]:
    db = next(info.database for info in topology.databases() if info.owner_id == owner)
    d = get_dialect(db.dialect)
    with closing(connect(db.dialect, db.dsn)) as conn:  # closed without commit: a read
        cur = conn.cursor()
        cur.execute(f"SELECT {d.quote_ident('ACCOUNTNUM')} FROM {d.qualified('ax', 'CUSTTABLE')}")
        return {str(r[0]) for r in cur.fetchall()}
