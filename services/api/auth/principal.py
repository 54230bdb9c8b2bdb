"""Pure: API keys, scopes, and the principal a request acts as.

A key is `oee_` followed by 32 random bytes in URL-safe base64. Only its SHA-256
is stored: a slow password hash protects guessable secrets, and 256 random bits
are not guessable, so a fast hash costs no safety and lets each request find its
key with one indexed lookup.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

KEY_PREFIX = "oee_"
KEY_BYTES = 32

# Scopes: submit orders, read one's own orders, see every owner's orders, and (issue 18) ask
# for the router's high-priority lane with `"priority": "high"`.
ORDERS_WRITE = "orders:write"
ORDERS_READ = "orders:read"
ADMIN = "admin"
ORDERS_PRIORITY = "orders:priority"
SCOPES = (ORDERS_WRITE, ORDERS_READ, ADMIN, ORDERS_PRIORITY)
DEFAULT_SCOPES = (ORDERS_WRITE, ORDERS_READ)


def new_key() -> str:
    """A fresh API key, to be shown once and stored only as its hash."""
    return KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)


def key_hash(key: str) -> str:
    """The stored form of a key: hex SHA-256 of its text."""
    return hashlib.sha256(key.encode()).hexdigest()


def looks_like_key(token: str) -> bool:
    return token.startswith(KEY_PREFIX)


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2


def checked_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """The scopes in canonical order; ValueError names any unknown one."""
    wanted = set(scopes)
    unknown = wanted - set(SCOPES)
    if unknown:
        raise ValueError(
            f"unknown scope(s) {', '.join(sorted(unknown))}; known: {', '.join(SCOPES)}"
        )
    return tuple(s for s in SCOPES if s in wanted)


@dataclass(frozen=True)
class Principal:
    """Who a request acts as. `owner` is what OrderSubmitted.owner records.

    An API key's owner is the key's id; a JWT's is `jwt:<sub>`; with
    authentication disabled it is None, the anonymous owner of the original API.
    """

    owner: str | None
    scopes: frozenset[str]
    name: str
    # The key's own submission limit (orders a second, burst); None: the deployment's.
    rate_limit: float | None = None
    burst: int | None = None

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.scopes

    def allows(self, scope: str) -> bool:
        return self.is_admin or scope in self.scopes

    @property
    def visible_owner(self) -> str | None:
        """The only owner whose orders this principal sees; None: every owner's."""
        return None if self.is_admin else self.owner

    def may_see(self, owner: str | None) -> bool:
        return self.is_admin or (self.owner is not None and owner == self.owner)

    @property
    def limit_key(self) -> str:
        """What rate and connection limits count against."""
        return self.owner or ""


# Authentication disabled: everything is allowed and every order is visible, as originally.
ANONYMOUS = Principal(owner=None, scopes=frozenset(SCOPES), name="anonymous")


# Browsers cannot set headers on a WebSocket; they offer `new WebSocket(url, ["bearer", key])`,
# which arrives as `Sec-WebSocket-Protocol: bearer, <key>` and is answered with "bearer".
BEARER_SUBPROTOCOL = "bearer"


def presented_credential(headers: Mapping[str, str]) -> str | None:
    """The key or token a request presents: `Authorization: Bearer <x>`, else `X-API-Key`,
    else (sockets from browsers) the subprotocols `bearer, <x>`."""
    authorization = headers.get("authorization")
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    api_key = headers.get("x-api-key")
    if api_key and api_key.strip():
        return api_key.strip()
    offered = [p.strip() for p in headers.get("sec-websocket-protocol", "").split(",")]
    if len(offered) == 2 and offered[0] == BEARER_SUBPROTOCOL and offered[1]:
        return offered[1]
    return None
