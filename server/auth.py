"""The one place tokens are checked, for HTTP requests and socket.io connects alike."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import jwt

from careline.signaling.errors import AuthError
from careline.signaling.identity import Principal, Role, revocation_keys
from careline.signaling.stores import RevocationStore

_REQUIRED = ["exp", "iat", "sub", "jti", "iss", "aud"]


class JwtAuthenticator:
    """Verifies HS256 tokens with the shared secret and, when configured, RS256 with a public key.

    A token's `alg` header picks the key; `none` and any other algorithm are refused. A valid
    token may still be refused as revoked (checked in the RevocationStore).
    """

    def __init__(
        self,
        secret: str,
        *,
        issuer: str,
        audience: str,
        leeway: float,
        revocations: RevocationStore,
        public_key: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys: dict[str, str] = {"HS256": secret}
        if public_key:
            self._keys["RS256"] = public_key
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway
        self._revocations = revocations
        self._clock = clock

    async def authenticate(self, token: str | None) -> Principal:
        """Return the token's Principal or raise AuthError with a reason code."""
        if not token:
            raise AuthError("an access token is required", code="auth.missing")
        claims = self._decode(token)
        principal = _principal(claims)
        if await self._revocations.is_revoked(revocation_keys(principal), self._clock()):
            raise AuthError("the access token was revoked", code="auth.revoked")
        return principal

    def _decode(self, token: str) -> Mapping[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError:
            raise AuthError("the access token is malformed", code="auth.malformed") from None
        algorithm = header.get("alg")
        key = self._keys.get(algorithm) if isinstance(algorithm, str) else None
        if key is None or not isinstance(algorithm, str):
            raise AuthError(
                "the access token's algorithm is not accepted", code="auth.bad_algorithm"
            )
        try:
            claims: Mapping[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self._audience,
                issuer=self._issuer,
                # Time claims are checked below against our clock (which tests can move).
                options={
                    "require": _REQUIRED,
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.InvalidSignatureError:
            raise AuthError(
                "the access token's signature is wrong", code="auth.bad_signature"
            ) from None
        except (jwt.MissingRequiredClaimError, jwt.InvalidAudienceError, jwt.InvalidIssuerError):
            raise AuthError(
                "the access token's claims are not valid here", code="auth.invalid_claims"
            ) from None
        except jwt.InvalidTokenError:
            raise AuthError("the access token is malformed", code="auth.malformed") from None
        self._check_times(claims)
        return claims

    def _check_times(self, claims: Mapping[str, Any]) -> None:
        now = self._clock()
        exp, nbf, iat = claims["exp"], claims.get("nbf"), claims["iat"]
        if not (_is_number(exp) and _is_number(iat) and (nbf is None or _is_number(nbf))):
            raise AuthError("the access token's times are not numbers", code="auth.invalid_claims")
        if iat > now + self._leeway:
            raise AuthError("the access token was issued in the future", code="auth.not_yet_valid")
        if exp <= now - self._leeway:
            raise AuthError("the access token has expired", code="auth.expired")
        if nbf is not None and nbf > now + self._leeway:
            raise AuthError("the access token is not valid yet", code="auth.not_yet_valid")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _principal(claims: Mapping[str, Any]) -> Principal:
    try:
        role = Role(str(claims.get("role")))
    except ValueError:
        raise AuthError("the access token's role is unknown", code="auth.invalid_claims") from None
    sub, jti = claims["sub"], claims["jti"]
    visit, thread = claims.get("visit"), claims.get("thread")
    if not (isinstance(sub, str) and sub and isinstance(jti, str) and jti):
        raise AuthError("the access token's claims are not valid here", code="auth.invalid_claims")
    if not all(v is None or (isinstance(v, str) and v) for v in (visit, thread)) or (
        visit is not None and thread is not None
    ):
        raise AuthError("the access token's scope is not valid", code="auth.invalid_claims")
    return Principal(
        sub=sub,
        role=role,
        token_id=jti,
        expires_at=float(claims["exp"]),
        visit_id=visit,
        thread_id=thread,
    )
