"""The FastAPI application: every resource family's router, auth, error handlers, OpenAPI.

``create_app(settings, hq)`` builds the app over an open :class:`~cdx.realtime.db.Hq` pool;
the OpenAPI description is served at ``/openapi.json`` (and browsable at ``/docs``).
``GET /health`` answers 200 when HQ answers, else 503 with ``Retry-After`` (no auth needed).
"""

from __future__ import annotations

import inspect
from typing import Any

from fastapi import FastAPI, Request

from cdx import __version__
from cdx.realtime import creditmemos, customers, giftcards, inventory, loyalty, salesorders, transactions
from cdx.realtime.config import RealtimeSettings
from cdx.realtime.db import Hq
from cdx.realtime.errors import ERROR_RESPONSES, install_handlers

ROUTERS = (giftcards.router, loyalty.router, creditmemos.router, customers.router, salesorders.router,
           inventory.router, transactions.router)
_DESCRIPTION = """The calls a register or online store makes to HQ while the customer waits.

Authenticate with `Authorization: Bearer <API key>` (or a TLS client certificate); `{channel}` is
your own channel id. Every POST/PUT/PATCH needs an `Idempotency-Key` header: retry with the same
key until you get an answer. 503 + `Retry-After` means HQ is unreachable: continue offline."""


def _options() -> dict[str, Any]:
    """FastAPI versions with built-in OpenTelemetry get it switched off: it costs every request CPU,
    which the service does not export."""
    if "telemetry" in inspect.signature(FastAPI).parameters:
        return {"telemetry": {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}}
    return {}


def create_app(settings: RealtimeSettings, hq: Hq) -> FastAPI:
    app = FastAPI(title="cdx Real-time Service", version=__version__, description=_DESCRIPTION, **_options())
    app.state.settings = settings
    app.state.hq = hq
    app.state.client_cert_names = {}
    install_handlers(app, settings.retry_after_seconds)
    for router in ROUTERS:
        app.include_router(router, responses=ERROR_RESPONSES)

    @app.get("/health", tags=["service"], summary="200 when HQ answers, else 503")
    def health(request: Request) -> dict[str, Any]:
        with hq.transaction(write=False) as tx:
            tx.all("SELECT 1 AS ok")
        return {"status": "ok", "hq": hq.dialect_name}

    return app
