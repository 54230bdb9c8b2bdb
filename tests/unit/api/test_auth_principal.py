"""Keys, scopes, credentials and the principal: pure rules of who is who."""

from __future__ import annotations

import hashlib

import pytest

from services.api.auth.principal import (
    ADMIN,
    ANONYMOUS,
    KEY_PREFIX,
    ORDERS_READ,
    ORDERS_WRITE,
    Principal,
    checked_scopes,
    key_hash,
    looks_like_jwt,
    looks_like_key,
    new_key,
    presented_credential,
)


def test_keys_are_long_random_and_stored_as_their_sha256() -> None:
    keys = {new_key() for _ in range(100)}
    assert len(keys) == 100
    key = keys.pop()
    assert key.startswith(KEY_PREFIX)
    assert len(key) >= len(KEY_PREFIX) + 43  # 32 bytes of URL-safe base64
    assert key_hash(key) == hashlib.sha256(key.encode()).hexdigest()
    assert key not in key_hash(key)
    assert looks_like_key(key)
    assert not looks_like_jwt(key)
    assert looks_like_jwt("a.b.c")


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"authorization": "Bearer oee_abc"}, "oee_abc"),
        ({"authorization": "bearer   oee_abc  "}, "oee_abc"),
        ({"x-api-key": "oee_xyz"}, "oee_xyz"),
        ({"authorization": "Bearer oee_abc", "x-api-key": "oee_xyz"}, "oee_abc"),
        ({"authorization": "Basic dXNlcjpwYXNz"}, None),
        ({"authorization": "Basic dXNlcjpwYXNz", "x-api-key": "oee_xyz"}, "oee_xyz"),
        ({"authorization": "Bearer "}, None),
        ({"x-api-key": "  "}, None),
        ({"sec-websocket-protocol": "bearer, oee_ws"}, "oee_ws"),
        ({"sec-websocket-protocol": "bearer"}, None),
        ({"sec-websocket-protocol": "chat, oee_ws"}, None),
    ],
)
def test_the_credential_comes_from_bearer_or_x_api_key(
    headers: dict[str, str], expected: str | None
) -> None:
    assert presented_credential(headers) == expected


def test_scopes_are_checked_and_put_in_order() -> None:
    assert checked_scopes([ORDERS_READ, ORDERS_WRITE, ORDERS_READ]) == (ORDERS_WRITE, ORDERS_READ)
    with pytest.raises(ValueError, match="orders:delete"):
        checked_scopes(["orders:delete"])


def test_an_owner_sees_only_its_own_orders_and_an_admin_all() -> None:
    alice = Principal("key-a", frozenset({ORDERS_READ, ORDERS_WRITE}), "alice")
    admin = Principal("key-z", frozenset({ADMIN}), "ops")
    reader = Principal("key-r", frozenset({ORDERS_READ}), "dashboard")
    assert alice.may_see("key-a")
    assert not alice.may_see("key-b")
    assert not alice.may_see(None)  # orders from a time without authentication
    assert alice.visible_owner == "key-a"
    assert admin.may_see("key-a")
    assert admin.may_see(None)
    assert admin.visible_owner is None
    assert admin.allows(ORDERS_WRITE)
    assert reader.allows(ORDERS_READ)
    assert not reader.allows(ORDERS_WRITE)


def test_without_authentication_everyone_is_the_anonymous_admin_of_the_original_api() -> None:
    assert ANONYMOUS.owner is None
    assert ANONYMOUS.visible_owner is None
    assert ANONYMOUS.allows(ORDERS_WRITE)
