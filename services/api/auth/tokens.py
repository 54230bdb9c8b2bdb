"""Signed JWTs for platforms that already issue tokens: HS256 or RS256, issuer and audience checked.

The algorithm is pinned by configuration, never taken from the token's header,
so an RS256 public key can never be used as an HS256 secret.
"""

from __future__ import annotations

from dataclasses import dataclass

import jwt

from services.api.auth.principal import DEFAULT_SCOPES, SCOPES, Principal
from services.common.settings import Settings

# HS256 with a short secret can be brute-forced offline from any one token.
MIN_HS256_SECRET_BYTES = 32
LEEWAY_SECONDS = 30


class InvalidToken(ValueError):
    """The token is not one this deployment accepts (the reason never contains the token)."""


@dataclass(frozen=True)
class JwtVerifier:
    algorithm: str
    key: str
    issuer: str
    audience: str

    @classmethod
    def from_settings(cls, settings: Settings) -> JwtVerifier | None:
        """The configured verifier; None when no key is configured; ValueError when incomplete."""
        key = settings.jwt_key.get_secret_value() if settings.jwt_key else None
        if settings.jwt_key_file is not None:
            key = settings.jwt_key_file.read_text()
        if not key:
            return None
        if not settings.jwt_issuer or not settings.jwt_audience:
            raise ValueError("OEE_JWT_ISSUER and OEE_JWT_AUDIENCE must be set with a JWT key")
        if settings.jwt_algorithm == "HS256" and len(key.encode()) < MIN_HS256_SECRET_BYTES:
            raise ValueError(f"the HS256 secret must be at least {MIN_HS256_SECRET_BYTES} bytes")
        return cls(settings.jwt_algorithm, key, settings.jwt_issuer, settings.jwt_audience)

    def verify(self, token: str) -> Principal:
        """The token's principal: owner `jwt:<sub>`, scopes from `scope` (or `scp`)."""
        try:
            claims = jwt.decode(
                token,
                self.key,
                algorithms=[self.algorithm],
                issuer=self.issuer,
                audience=self.audience,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.InvalidTokenError as exc:
            raise InvalidToken(type(exc).__name__) from None
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject:
            raise InvalidToken("empty subject")
        return Principal(owner=f"jwt:{subject}", scopes=token_scopes(claims), name=f"jwt {subject}")


def token_scopes(claims: dict[str, object]) -> frozenset[str]:
    """Our scopes among the token's (RFC 8693 `scope` string or a `scp` list); default if none."""
    raw = claims.get("scope", claims.get("scp"))
    if isinstance(raw, str):
        given = raw.split()
    elif isinstance(raw, list):
        given = [s for s in raw if isinstance(s, str)]
    else:
        return frozenset(DEFAULT_SCOPES)
    return frozenset(s for s in given if s in SCOPES)
