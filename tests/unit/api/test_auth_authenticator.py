"""Headers -> principal, over an in-memory key store and real JWT signatures."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr

from services.api.auth.authenticator import INVALID, MISSING, UNAVAILABLE, Authenticator
from services.api.auth.principal import ADMIN, ANONYMOUS, ORDERS_READ, ORDERS_WRITE, Principal
from services.api.auth.store import MemoryKeys
from services.api.auth.tokens import JwtVerifier, token_scopes
from services.common.settings import Settings

SECRET = "s" * 40
ISSUER = "https://id.example.test"
AUDIENCE = "oee-api"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def bearer(credential: str) -> dict[str, str]:
    return {"authorization": f"Bearer {credential}"}


def claims(**overrides: Any) -> dict[str, Any]:
    return {
        "sub": "user-7",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "exp": int(time.time()) + 300,
        **overrides,
    }


async def test_no_credential_is_401_and_auth_disabled_is_the_anonymous_admin() -> None:
    keys = MemoryKeys()
    assert await Authenticator(keys).authenticate({}) is MISSING
    assert await Authenticator(keys, enabled=False).authenticate({}) is ANONYMOUS


async def test_a_key_is_its_own_owner_with_its_scopes() -> None:
    keys = MemoryKeys()
    row, key = keys.add("alice", (ORDERS_READ,))
    auth = Authenticator(keys)
    for headers in (bearer(key), {"x-api-key": key}):
        found = await auth.authenticate(headers)
        assert found == Principal(str(row.id), frozenset({ORDERS_READ}), "alice")
    assert await auth.authenticate(bearer(key + "x")) is INVALID
    assert await auth.authenticate(bearer("not-a-key")) is INVALID


async def test_a_revoked_key_is_refused_once_the_cache_expires() -> None:
    keys, clock = MemoryKeys(), Clock()
    _, key = keys.add("alice")
    auth = Authenticator(keys, cache_seconds=5, clock=clock)
    assert isinstance(await auth.authenticate(bearer(key)), Principal)
    keys.revoke(key)
    clock.now += 1
    assert isinstance(await auth.authenticate(bearer(key)), Principal)  # cached
    assert keys.lookups == 1
    clock.now += 5
    assert await auth.authenticate(bearer(key)) is INVALID
    assert keys.lookups == 2


async def test_while_the_store_is_down_known_keys_still_work_and_unknown_get_503() -> None:
    keys, clock = MemoryKeys(), Clock()
    _, known = keys.add("alice")
    _, unseen = keys.add("bob")
    auth = Authenticator(keys, cache_seconds=1, clock=clock)
    assert isinstance(await auth.authenticate(bearer(known)), Principal)
    keys.down = True
    clock.now += 10
    assert isinstance(await auth.authenticate(bearer(known)), Principal)
    assert await auth.authenticate(bearer(unseen)) is UNAVAILABLE


async def test_an_hs256_token_with_the_right_issuer_and_audience_is_accepted() -> None:
    auth = Authenticator(MemoryKeys(), jwt=JwtVerifier("HS256", SECRET, ISSUER, AUDIENCE))
    token = jwt.encode(claims(scope="orders:read admin other"), SECRET, algorithm="HS256")
    found = await auth.authenticate(bearer(token))
    assert found == Principal("jwt:user-7", frozenset({ORDERS_READ, ADMIN}), "jwt user-7")


@pytest.mark.parametrize(
    "bad",
    [
        {"iss": "https://elsewhere.test"},
        {"aud": "another-api"},
        {"exp": int(time.time()) - 3600},
        {"sub": None},
    ],
    ids=["issuer", "audience", "expired", "no-subject"],
)
async def test_a_token_for_someone_else_or_expired_is_refused(bad: dict[str, Any]) -> None:
    auth = Authenticator(MemoryKeys(), jwt=JwtVerifier("HS256", SECRET, ISSUER, AUDIENCE))
    body = {k: v for k, v in claims(**bad).items() if v is not None}
    assert await auth.authenticate(bearer(jwt.encode(body, SECRET, algorithm="HS256"))) is INVALID


async def test_a_token_signed_with_another_secret_or_unconfigured_jwt_is_refused() -> None:
    forged = jwt.encode(claims(), "f" * 40, algorithm="HS256")
    with_jwt = Authenticator(MemoryKeys(), jwt=JwtVerifier("HS256", SECRET, ISSUER, AUDIENCE))
    assert await with_jwt.authenticate(bearer(forged)) is INVALID
    genuine = jwt.encode(claims(), SECRET, algorithm="HS256")
    assert await Authenticator(MemoryKeys()).authenticate(bearer(genuine)) is INVALID


async def test_rs256_verifies_with_the_public_key_and_refuses_algorithm_confusion() -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    auth = Authenticator(MemoryKeys(), jwt=JwtVerifier("RS256", public_pem, ISSUER, AUDIENCE))
    token = jwt.encode(claims(scp=["orders:write"]), private, algorithm="RS256")
    found = await auth.authenticate(bearer(token))
    assert isinstance(found, Principal)
    assert found.scopes == frozenset({ORDERS_WRITE})
    # The classic confusion: an HS256 token "signed" with the public key as the secret.
    assert await auth.authenticate(bearer(hs256_by_hand(claims(), public_pem.encode()))) is INVALID


def hs256_by_hand(body: dict[str, Any], secret: bytes) -> str:
    """An HS256 token built without PyJWT, which refuses to use a PEM key as an HMAC secret."""

    def part(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    signing_input = (
        part(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        + b"."
        + part(json.dumps(body).encode())
    )
    signature = hmac.new(secret, signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + part(signature)).decode()


def test_token_scopes_default_when_absent() -> None:
    assert token_scopes({}) == frozenset({ORDERS_READ, ORDERS_WRITE})
    assert token_scopes({"scope": ""}) == frozenset()


def test_the_verifier_needs_issuer_audience_and_a_long_enough_secret() -> None:
    assert JwtVerifier.from_settings(Settings()) is None
    with pytest.raises(ValueError, match="ISSUER"):
        JwtVerifier.from_settings(Settings(jwt_key=SecretStr(SECRET)))
    with pytest.raises(ValueError, match="32 bytes"):
        JwtVerifier.from_settings(
            Settings(jwt_key=SecretStr("short"), jwt_issuer=ISSUER, jwt_audience=AUDIENCE)
        )
    verifier = JwtVerifier.from_settings(
        Settings(jwt_key=SecretStr(SECRET), jwt_issuer=ISSUER, jwt_audience=AUDIENCE)
    )
    assert verifier == JwtVerifier("HS256", SECRET, ISSUER, AUDIENCE)
    assert SECRET not in repr(Settings(jwt_key=SecretStr(SECRET)))


async def test_a_key_carries_its_own_rate_limit_and_the_principal_is_built_once() -> None:
    keys = MemoryKeys()
    _, bot = keys.add("bot", rate_limit=500, burst=1000)
    _, plain = keys.add("plain")
    auth = Authenticator(keys, clock=Clock())
    first = await auth.authenticate(bearer(bot))
    assert isinstance(first, Principal)
    assert (first.rate_limit, first.burst) == (500, 1000)
    assert await auth.authenticate(bearer(bot)) is first
    other = await auth.authenticate(bearer(plain))
    assert isinstance(other, Principal)
    assert (other.rate_limit, other.burst) == (None, None)


class SlowKeys(MemoryKeys):
    """Answers only when released, so lookups overlap."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def find(self, hashed: str) -> Any:
        await self.release.wait()
        return await super().find(hashed)


async def test_concurrent_requests_with_an_unseen_key_share_one_lookup() -> None:
    keys = SlowKeys()
    row, key = keys.add("busy")
    auth = Authenticator(keys)
    waiting = [asyncio.create_task(auth.authenticate(bearer(key))) for _ in range(50)]
    await asyncio.sleep(0)
    keys.release.set()
    found = await asyncio.gather(*waiting)
    assert {p.owner for p in found if isinstance(p, Principal)} == {str(row.id)}
    assert len(found) == 50
    assert keys.lookups == 1


async def test_a_shared_lookup_that_fails_fails_every_waiter_alike() -> None:
    keys = SlowKeys()
    _, key = keys.add("busy")
    keys.down = True
    auth = Authenticator(keys)
    waiting = [asyncio.create_task(auth.authenticate(bearer(key))) for _ in range(5)]
    await asyncio.sleep(0)
    keys.release.set()
    assert await asyncio.gather(*waiting) == [UNAVAILABLE] * 5
    assert keys.lookups == 1
    keys.down = False
    assert isinstance(await auth.authenticate(bearer(key)), Principal)  # tried again after
