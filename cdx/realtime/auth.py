"""Who is calling, and for which channel and legal entity.

A caller authenticates with ``Authorization: Bearer <api key>`` (keys configured per channel and
register, compared by SHA-256) or, when TLS client certificates are on, with a certificate
whose common name is its principal id. It acts only as itself: the ``{channel}`` in the path
must be its own channel (a register acts for its store), and the ``legal_entity`` query
parameter (default: the first of its channel data group) must be one of its group's. Wrong or
missing credentials -> 401, anything else out of scope -> 403; neither says more.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Depends, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from cdx.realtime.config import Principal, RealtimeSettings
from cdx.realtime.errors import forbidden, unauthorized

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,59}$"
LE_PATTERN = r"^[A-Za-z0-9_]{1,8}$"
bearer = HTTPBearer(auto_error=False, description="The channel's or register's API key.")


@dataclass(frozen=True)
class Caller:
    """An authenticated principal acting for ``channel`` in ``legal_entity``."""

    principal: Principal
    legal_entity: str

    @property
    def id(self) -> str:
        return self.principal.id

    @property
    def channel(self) -> str:
        return self.principal.channel


def authenticate(request: Request, credentials: HTTPAuthorizationCredentials | None) -> Principal:
    """The principal of the request's credential; 401 when there is none or it is unknown."""
    settings: RealtimeSettings = request.app.state.settings
    cert_names: dict[object, str] = getattr(request.app.state, "client_cert_names", {})
    client = request.scope.get("client")
    cert_name = cert_names.get(tuple(client)) if client else None
    if cert_name is not None:
        principal = settings.principals.get(cert_name)
    else:
        key = credentials.credentials.strip() if credentials is not None else ""
        principal = settings.principal_for_key(key) if key else None
    if principal is None:
        raise unauthorized()
    return principal


async def current_caller(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
    channel: str = Path(pattern=ID_PATTERN, description="The caller's own channel id."),
    legal_entity: str | None = Query(None, pattern=LE_PATTERN,
                                     description="Legal entity (DATAAREAID); default: the channel's first."),
) -> Caller:
    """The caller, checked against the path's channel and the requested legal entity (403 otherwise).

    One dependency (plus the bearer scheme) rather than a chain: FastAPI's per-request cost grows
    with every level, and this runs on every call; it does no I/O, so it runs on the event loop."""
    principal = authenticate(request, credentials)
    if channel != principal.channel:
        raise forbidden()
    if legal_entity is None:
        return Caller(principal, principal.legal_entities[0])
    for entity in principal.legal_entities:
        if entity.casefold() == legal_entity.casefold():
            return Caller(principal, entity)
    raise forbidden()


CALLER = Depends(current_caller)
"""The default of every operation's ``caller`` parameter: ``caller: Caller = CALLER``."""
