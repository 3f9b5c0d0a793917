"""The Real-time Service: the calls a register or online store makes to HQ while the customer waits.

An HTTP service (FastAPI on uvicorn) over the HQ database for what a channel database cannot
answer: gift cards, loyalty points, credit memos, customers, sales orders, inventory receiving
and counting, cross-store transactions and returns. Depends only on the kernel (topology,
dialects). Contracts:

- every mutation carries an ``Idempotency-Key`` and commits its effect, its ledger rows and its
  stored response in one database transaction (exactly once, also across a killed process);
- balances change by conditional updates, so no interleaving of requests overspends;
- HQ unreachable -> 503 with ``Retry-After``; invalid input -> 422 naming the field.

Entry points: :func:`cdx.realtime.app.create_app`, :func:`cdx.realtime.schema.create_tables`,
:func:`cdx.realtime.server.serve`.
"""
