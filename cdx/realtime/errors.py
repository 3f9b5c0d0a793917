"""Error responses: one JSON shape, never a traceback.

``{"error": "<code>", "message": "<what is wrong and what to do>"}``, plus ``"fields"`` (each
``{"field": "body.amount", "message": ...}``) for 422 validation errors. 401 and 403 say no
more than their code. HQ unreachable -> 503 with ``Retry-After``.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from cdx.realtime.db import HqUnavailable

log = logging.getLogger("cdx.realtime")


class FieldError(BaseModel):
    field: str
    message: str


class ErrorBody(BaseModel):
    """Every error response: a stable ``error`` code, a human ``message``; ``fields`` on 422."""

    error: str
    message: str
    fields: list[FieldError] | None = None


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "No or unknown credential"},
    403: {"model": ErrorBody, "description": "Another channel, or a legal entity outside the caller's group"},
    404: {"model": ErrorBody, "description": "Not found in this legal entity"},
    409: {"model": ErrorBody, "description": "Refused by a business rule; nothing applied"},
    422: {"model": ErrorBody, "description": "Invalid request (fields named), or an Idempotency-Key reused"},
    503: {"model": ErrorBody, "description": "HQ unreachable; retry after Retry-After seconds"},
}
"""The error responses every operation documents in the OpenAPI description."""


class ApiError(Exception):
    """A refusal the caller can act on: HTTP ``status``, a stable ``code``, a human ``message``."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def unauthorized() -> ApiError:
    return ApiError(401, "unauthorized", "authentication required", {"WWW-Authenticate": "Bearer"})


def forbidden() -> ApiError:
    return ApiError(403, "forbidden", "not allowed")


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"{what} not found")


def conflict(code: str, message: str) -> ApiError:
    return ApiError(409, code, message)


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": code, "message": message, **extra}


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(p) for p in loc)


def install_handlers(app: FastAPI, retry_after_seconds: int) -> None:
    """Register the handlers that give every failure its JSON shape."""

    async def on_api_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return JSONResponse(error_body(exc.code, exc.message), exc.status, headers=exc.headers)

    async def on_validation(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        fields = [{"field": _field(e.get("loc", ())), "message": str(e.get("msg", "invalid"))} for e in exc.errors()]
        named = ", ".join(f["field"] for f in fields[:5])
        return JSONResponse(error_body("invalid_request", f"invalid value for {named}", fields=fields), 422)

    async def on_unavailable(_request: Request, _exc: Exception) -> JSONResponse:
        return JSONResponse(error_body("hq_unavailable", "HQ is not reachable; retry later with the same"
                                       " Idempotency-Key, or continue offline"), 503,
                            headers={"Retry-After": str(retry_after_seconds)})

    async def on_http(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(error_body(code, str(exc.detail)), exc.status_code, headers=exc.headers)

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse(error_body("internal_error", "the request failed; it had no effect"), 500)

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(HqUnavailable, on_unavailable)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
