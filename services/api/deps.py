"""Dependency aliases: routes ask for what they use, the runtime on app.state provides it.

Every dependency is `async def` although none waits on anything: FastAPI runs a
plain `def` dependency in a worker thread, and those hand-offs were a third of
the API's CPU under load (py-spy).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

from fastapi import Depends, Security, WebSocket
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from services.api.auth.authenticator import AuthFailure, insufficient_scope
from services.api.auth.principal import ADMIN, ORDERS_READ, ORDERS_WRITE, Principal
from services.api.auth.ratelimit import ConnectionLimiter, retry_after
from services.api.errors import ApiError
from services.api.feed import LiveFeed
from services.api.market_feed import MarketFeed
from services.api.market_read import MarketReadModel
from services.api.publisher import OrderPublisher
from services.api.quotes import Quoter
from services.api.read_model import ReadModel
from services.api.runtime import ApiRuntime
from services.common.settings import Settings
from services.domain.launches import Launches


async def _runtime(connection: HTTPConnection) -> ApiRuntime:
    runtime: ApiRuntime = connection.app.state.runtime
    return runtime


async def _settings(runtime: Runtime) -> Settings:
    return runtime.settings


async def _publisher(runtime: Runtime) -> OrderPublisher:
    return runtime.publisher


async def _read_model(runtime: Runtime) -> ReadModel:
    return runtime.read_model


async def _feed(runtime: Runtime) -> LiveFeed:
    return runtime.feed


async def _quoter(runtime: Runtime) -> Quoter:
    return runtime.quoter


async def _market_read(runtime: Runtime) -> MarketReadModel:
    return runtime.market_read


async def _market_feed(runtime: Runtime) -> MarketFeed:
    return runtime.market_feed


async def _launches(runtime: Runtime) -> Launches:
    return runtime.chain_events.launches


Runtime = Annotated[ApiRuntime, Depends(_runtime)]
SettingsDep = Annotated[Settings, Depends(_settings)]
PublisherDep = Annotated[OrderPublisher, Depends(_publisher)]
ReadModelDep = Annotated[ReadModel, Depends(_read_model)]
FeedDep = Annotated[LiveFeed, Depends(_feed)]
QuoterDep = Annotated[Quoter, Depends(_quoter)]
MarketReadDep = Annotated[MarketReadModel, Depends(_market_read)]
MarketFeedDep = Annotated[MarketFeed, Depends(_market_feed)]
LaunchesDep = Annotated[Launches, Depends(_launches)]
"""The launches folded from `chain.events` so far (services/common/chain_events.py)."""


# Declared so that /docs offers both ways in; the credential itself is read from the
# headers by services.api.auth.principal.presented_credential, for HTTP and sockets alike.
_BEARER = HTTPBearer(auto_error=False, description="An API key (oee_...) or a signed JWT")
_API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key")


def _refuse(failure: AuthFailure) -> ApiError:
    return ApiError(failure.status, failure.body(), failure.headers)


async def authenticate(runtime: ApiRuntime, headers: Mapping[str, str]) -> Principal:
    """The request's principal, or ApiError 401/503 (one cached dict hit for a known key)."""
    found = await runtime.auth.authenticate(headers)
    if isinstance(found, AuthFailure):
        raise _refuse(found)
    return found


def admit_submission(runtime: ApiRuntime, principal: Principal) -> None:
    """ApiError 403 without the orders:write scope, 429 past the key's rate limit."""
    if not principal.allows(ORDERS_WRITE):
        raise _refuse(insufficient_scope(ORDERS_WRITE))
    if runtime.auth.enabled:
        limits = runtime.order_limits
        wait = limits.take(principal.limit_key, principal.rate_limit, principal.burst)
        if wait > 0:
            raise ApiError(
                429,
                {
                    "error": "RATE_LIMITED",
                    "message": f"At most {principal.rate_limit or limits.rate:g} orders a second"
                    f" for this key (bursts of {principal.burst or limits.burst}); retry in"
                    f" {wait:.2f}s",
                },
                {"Retry-After": retry_after(wait)},
            )


async def _principal(
    connection: HTTPConnection,
    runtime: Runtime,
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_BEARER)],
    _api_key: Annotated[str | None, Security(_API_KEY)],
) -> Principal:
    # A dependency, so it runs before the route reads the body: 401 comes before any 400.
    return await authenticate(runtime, connection.headers)


Authenticated = Annotated[Principal, Depends(_principal)]


async def _reader(principal: Authenticated) -> Principal:
    if not principal.allows(ORDERS_READ):
        raise _refuse(insufficient_scope(ORDERS_READ))
    return principal


async def _submitter(principal: Authenticated, runtime: Runtime) -> Principal:
    admit_submission(runtime, principal)
    return principal


async def _administrator(principal: Authenticated) -> Principal:
    if not principal.allows(ADMIN):
        raise _refuse(insufficient_scope(ADMIN))
    return principal


# How the submission route, which solves no dependencies (they were a quarter of the 202
# path's CPU, py-spy), declares the same credentials in its OpenAPI operation.
SECURITY_OPENAPI: list[dict[str, list[str]]] = [
    {_BEARER.scheme_name: []},
    {_API_KEY.scheme_name: []},
]


async def socket_principal(
    runtime: ApiRuntime, headers: Mapping[str, str]
) -> Principal | AuthFailure:
    """A socket's principal, or why not: sockets are refused by their handler (accept, error
    message, close code), not by raising."""
    found = await runtime.auth.authenticate(headers)
    if isinstance(found, Principal) and not found.allows(ORDERS_READ):
        return insufficient_scope(ORDERS_READ)
    return found


def socket_limits(runtime: ApiRuntime) -> ConnectionLimiter | None:
    """The per-key socket counts, or None with authentication disabled."""
    return runtime.socket_limits if runtime.auth.enabled else None


async def _socket_principal(websocket: WebSocket, runtime: Runtime) -> Principal | AuthFailure:
    return await socket_principal(runtime, websocket.headers)


async def _socket_limits(runtime: Runtime) -> ConnectionLimiter | None:
    return socket_limits(runtime)


Reader = Annotated[Principal, Depends(_reader)]
Submitter = Annotated[Principal, Depends(_submitter)]
Administrator = Annotated[Principal, Depends(_administrator)]
SocketPrincipal = Annotated[Principal | AuthFailure, Depends(_socket_principal)]
SocketLimits = Annotated[ConnectionLimiter | None, Depends(_socket_limits)]
