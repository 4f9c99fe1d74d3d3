"""Where the load tester's tokens come from: signed with the deployment's secret, or minted by it.

`SecretTokens` signs HS256 access tokens (and order tokens, with the order key) itself, with the
claims docs/protocol.md ("Tokens", "Order tokens") prescribes. `AdminTokens` asks the target's
`POST /api/tokens` with an admin token; the API mints no order tokens, so hotline traffic then
needs the order key too. Subjects are opaque ids made by the load tester, never personal data.
"""

from __future__ import annotations

import secrets
import time
from typing import Any, Protocol

import aiohttp
import jwt

from careline.loadtest.errors import LoadtestError

DEFAULT_TTL = 4 * 3600


class TokenError(LoadtestError):
    """A token could not be had (the admin endpoint refused, no order key)."""

    code = "loadtest.token"


class TokenSource(Protocol):
    """Access tokens for any role and scope, and order tokens for kiosks."""

    async def token(
        self, role: str, sub: str, *, visit_id: str | None = None, thread_id: str | None = None
    ) -> str:
        """An access token of `role` for `sub`, optionally scoped."""
        ...

    def order_token(self, order_id: str) -> str:
        """An order (QR) token for `order_id`; TokenError without the order key."""
        ...


class _OrderSigner:
    def __init__(self, order_secret: str | None, issuer: str, audience: str, ttl: int) -> None:
        self._order_secret = order_secret
        self._issuer = issuer
        self._audience = audience
        self._ttl = ttl

    def order_token(self, order_id: str) -> str:
        """An order token signed with the order key."""
        if not self._order_secret:
            raise TokenError("hotline traffic needs the order key: pass --order-secret")
        now = int(time.time())
        claims = {
            "iss": self._issuer,
            "aud": f"{self._audience}:order",
            "kind": "order",
            "sub": order_id,
            "iat": now,
            "exp": now + self._ttl,
            "jti": secrets.token_urlsafe(12),
        }
        return jwt.encode(claims, self._order_secret, algorithm="HS256")


class SecretTokens(_OrderSigner):
    """Signs tokens with the deployment's `auth.secret` (HS256)."""

    def __init__(
        self,
        secret: str,
        *,
        order_secret: str | None = None,
        issuer: str = "careline",
        audience: str = "careline",
        ttl: int = DEFAULT_TTL,
    ) -> None:
        super().__init__(order_secret, issuer, audience, ttl)
        self._secret = secret

    async def token(
        self, role: str, sub: str, *, visit_id: str | None = None, thread_id: str | None = None
    ) -> str:
        """An HS256 access token."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": sub,
            "role": role,
            "iat": now,
            "nbf": now,
            "exp": now + self._ttl,
            "jti": secrets.token_urlsafe(12),
        }
        if visit_id is not None:
            claims["visit"] = visit_id
        if thread_id is not None:
            claims["thread"] = thread_id
        return jwt.encode(claims, self._secret, algorithm="HS256")


class AdminTokens(_OrderSigner):
    """Mints tokens through the target's `POST /api/tokens` with an admin token."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        url: str,
        admin_token: str,
        *,
        order_secret: str | None = None,
        issuer: str = "careline",
        audience: str = "careline",
        ttl: int = DEFAULT_TTL,
    ) -> None:
        super().__init__(order_secret, issuer, audience, ttl)
        self._http = http
        self._url = url
        self._admin = admin_token

    async def token(
        self, role: str, sub: str, *, visit_id: str | None = None, thread_id: str | None = None
    ) -> str:
        """A token from the admin endpoint; TokenError if it refuses."""
        if role == "admin" and sub == "loadtest-admin":
            return self._admin
        body: dict[str, Any] = {"sub": sub, "role": role, "ttl_seconds": self._ttl}
        if visit_id is not None:
            body["visit_id"] = visit_id
        if thread_id is not None:
            body["thread_id"] = thread_id
        headers = {"Authorization": f"Bearer {self._admin}"}
        async with self._http.post(
            f"{self._url}/api/tokens", json=body, headers=headers
        ) as response:
            data = await response.json(content_type=None)
            if response.status != 201:
                code = (data or {}).get("error", {}).get("code", "?")
                raise TokenError(f"POST /api/tokens answered {response.status} {code}")
            return str(data["token"])
