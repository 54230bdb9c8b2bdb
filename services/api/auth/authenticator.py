"""One request's credential -> the principal it acts as, or why not.

Keys are looked up by hash and the answer (found, revoked or unknown) is kept for
`auth_cache_seconds`, so a busy key costs PostgreSQL one query per interval and a
revocation takes effect within it. While PostgreSQL is down, a key seen before is
still honoured from the cache (submissions keep working, as they do without auth);
an unseen one gets 503.

Nothing here logs or returns the credential itself: failures carry a fixed message,
and logs name a key by its id.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from services.api.auth.principal import (
    ANONYMOUS,
    Principal,
    key_hash,
    looks_like_jwt,
    looks_like_key,
    presented_credential,
)
from services.api.auth.store import AuthUnavailable, KeyLookup, StoredKey
from services.api.auth.tokens import InvalidToken, JwtVerifier

log = logging.getLogger(__name__)

MAX_CACHED_KEYS = 10_000
_CHALLENGE = 'Bearer realm="oee"'


@dataclass(frozen=True)
class AuthFailure:
    """Why a request is refused: 401 (no or bad credential), 403 (scope) or 503."""

    status: int
    error: str
    message: str
    headers: dict[str, str] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "message": self.message}


MISSING = AuthFailure(
    401,
    "UNAUTHORIZED",
    "Authentication required: send an API key as 'Authorization: Bearer <key>' or 'X-API-Key'",
    {"WWW-Authenticate": _CHALLENGE},
)
INVALID = AuthFailure(
    401,
    "INVALID_CREDENTIALS",
    "The API key or token is not valid (unknown, revoked, expired or badly signed)",
    {"WWW-Authenticate": f'{_CHALLENGE}, error="invalid_token"'},
)
UNAVAILABLE = AuthFailure(
    503,
    "AUTH_UNAVAILABLE",
    "Credentials cannot be checked right now; retry later",
    {"Retry-After": "5"},
)


def insufficient_scope(scope: str) -> AuthFailure:
    return AuthFailure(
        403,
        "INSUFFICIENT_SCOPE",
        f"This key lacks the {scope} scope",
        {"WWW-Authenticate": f'{_CHALLENGE}, error="insufficient_scope", scope="{scope}"'},
    )


@dataclass
class _Cached:
    at: float
    key: StoredKey | None
    # Built once per lookup, not once per request: the 202 path's key check is one dict hit.
    answer: Principal | AuthFailure


def _answer_for(found: StoredKey | None) -> Principal | AuthFailure:
    if found is None:
        return INVALID
    if not found.active:
        return INVALID
    return Principal(
        owner=str(found.id),
        scopes=frozenset(found.scopes),
        name=found.name,
        rate_limit=found.rate_limit,
        burst=found.burst,
    )


class Authenticator:
    """Turns request headers into a Principal (or an AuthFailure)."""

    def __init__(
        self,
        keys: KeyLookup,
        *,
        enabled: bool = True,
        jwt: JwtVerifier | None = None,
        cache_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.keys = keys
        self.enabled = enabled
        self.jwt = jwt
        self.cache_seconds = cache_seconds
        self._clock = clock
        self._cache: OrderedDict[str, _Cached] = OrderedDict()
        # One lookup per key hash at a time: a burst of requests with a key whose cache entry
        # just expired asks PostgreSQL once, not once each (which took every pooled connection).
        self._looking_up: dict[str, asyncio.Future[StoredKey | None]] = {}

    async def authenticate(self, headers: Mapping[str, str]) -> Principal | AuthFailure:
        if not self.enabled:
            return ANONYMOUS
        credential = presented_credential(headers)
        if credential is None:
            return MISSING
        if looks_like_key(credential):
            return await self._by_key(credential)
        if self.jwt is not None and looks_like_jwt(credential):
            try:
                return self.jwt.verify(credential)
            except InvalidToken as exc:
                log.info("refused a JWT: %s", exc)
                return INVALID
        return INVALID

    async def _by_key(self, key: str) -> Principal | AuthFailure:
        hashed = key_hash(key)
        now = self._clock()
        cached = self._cache.get(hashed)
        if cached is not None and now - cached.at < self.cache_seconds:
            return cached.answer
        try:
            found = await self._lookup(hashed)
        except AuthUnavailable as exc:
            if cached is None:
                log.warning("cannot check an API key: %s", exc)
                return UNAVAILABLE
            return cached.answer  # stale, but the best knowledge there is
        answer = _answer_for(found)
        self._remember(hashed, _Cached(now, found, answer))
        if found is not None and not found.active:
            log.info("refused revoked API key %s (%s)", found.id, found.name)
        return answer

    async def _lookup(self, hashed: str) -> StoredKey | None:
        pending = self._looking_up.get(hashed)
        if pending is not None:
            return await asyncio.shield(pending)
        pending = asyncio.get_running_loop().create_future()
        self._looking_up[hashed] = pending
        try:
            found = await self.keys.find(hashed)
        except BaseException as exc:
            if not pending.done():
                if isinstance(exc, Exception):
                    pending.set_exception(exc)
                    pending.exception()  # retrieved: waiters re-raise it, none may exist
                else:
                    pending.cancel()
            raise
        else:
            pending.set_result(found)
            return found
        finally:
            del self._looking_up[hashed]

    def _remember(self, hashed: str, entry: _Cached) -> None:
        self._cache[hashed] = entry
        self._cache.move_to_end(hashed)
        if len(self._cache) > MAX_CACHED_KEYS:
            self._cache.popitem(last=False)
