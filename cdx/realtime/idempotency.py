"""Exactly-once mutations keyed by the caller's ``Idempotency-Key``.

:func:`run_once` runs a mutation in one HQ transaction that first inserts the key's row
``(principal, key)``, then applies the effect, then stores the response in that row; the
commit makes all three durable together. So:

- a retry with the same key and the same request gets the stored response (``Idempotent-Replayed:
  true``) and changes nothing; with a different request it gets 422;
- concurrent requests with one key run once: the second insert waits for the first
  transaction (PostgreSQL's unique index, SQL Server's key lock, SQLite's write lock) and then
  finds the key taken;
- a process killed mid-request leaves nothing: the transaction never committed, and a retry runs;
- a refused request (4xx) rolls back with its key, so a retry is evaluated anew.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable
from typing import Any

from fastapi import Header, Request
from fastapi.responses import Response
from pydantic import BaseModel

from cdx.realtime.auth import Caller
from cdx.realtime.db import Hq, Tx
from cdx.realtime.errors import ApiError

KEY_PATTERN = r"^[\x21-\x7e]{1,100}$"
IdempotencyKey = Header(alias="Idempotency-Key", pattern=KEY_PATTERN,
                        description="Unique per intended effect (e.g. a UUID); retries reuse it.")
Work = Callable[[Tx], tuple[int, Any]]


def now_text() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def fingerprint(request: Request, body: BaseModel | None) -> str:
    """A hash of what the request asks for: method, path, query and the validated body."""
    query = sorted(request.query_params.multi_items())
    payload = body.model_dump(mode="json") if body is not None else None
    text = json.dumps([request.method, request.url.path, query, payload], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def run_once(hq: Hq, caller: Caller, key: str, request_hash: str, work: Work) -> Response:
    """Run ``work(tx)`` (which returns ``(status, json body)``) once for ``key``; see module docstring."""
    with hq.transaction() as tx:
        table = tx.t("IDEMPOTENCY")
        row = {"PRINCIPAL": caller.id, "IDEMKEY": key, "REQUESTHASH": request_hash, "STATUSCODE": 0,
               "RESPONSE": "", "CREATEDAT": now_text()}
        if tx.insert_if_absent(table, row, ["PRINCIPAL", "IDEMKEY"]):
            status, body = work(tx)
            text = json.dumps(body, separators=(",", ":"), default=str)
            tx.defer(f"UPDATE {table} SET {tx.q('STATUSCODE')} = {tx.p}, {tx.q('RESPONSE')} = {tx.p}"
                     f" WHERE {tx.where(['PRINCIPAL', 'IDEMKEY'])}", [status, text, caller.id, key])
            return _json(text, status)
        stored = tx.one(f"SELECT {tx.cols(['REQUESTHASH', 'STATUSCODE', 'RESPONSE'])} FROM {table}"
                        f" WHERE {tx.where(['PRINCIPAL', 'IDEMKEY'])}", [caller.id, key])
    if stored is None:  # the row's writer rolled back between our insert and read: ask for a retry
        raise ApiError(409, "retry", "a request with this Idempotency-Key was in flight; retry it")
    if stored["REQUESTHASH"] != request_hash:
        raise ApiError(422, "idempotency_key_reused", "this Idempotency-Key was used for a different request;"
                       " use a new key for a new request")
    return _json(str(stored["RESPONSE"]), int(stored["STATUSCODE"]), {"Idempotent-Replayed": "true"})


def _json(text: str, status: int, headers: dict[str, str] | None = None) -> Response:
    """The stored JSON text as the response, byte for byte (a replay answers exactly the same)."""
    return Response(content=text, status_code=status, headers=headers, media_type="application/json")
