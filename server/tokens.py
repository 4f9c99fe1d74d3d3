"""Minting Careline access tokens (JWT, HS256). Used by the CLI and, later, by REST routes."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

import jwt

from careline.signaling.identity import Role
from careline.signaling.schemas import OPAQUE_ID_PATTERN

ALGORITHM = "HS256"
_OPAQUE = re.compile(OPAQUE_ID_PATTERN)


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A freshly signed token and what it grants."""

    token: str
    token_id: str
    expires_at: int


class TokenIssuer:
    """Signs tokens with the deployment's HS256 secret. Claims carry opaque ids only."""

    def __init__(
        self,
        secret: str,
        *,
        issuer: str,
        audience: str,
        default_ttl: int,
        max_ttl: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._secret = secret
        self._issuer = issuer
        self._audience = audience
        self._default_ttl = default_ttl
        self._max_ttl = max_ttl
        self._clock = clock

    def issue(
        self,
        *,
        sub: str,
        role: Role,
        visit_id: str | None = None,
        thread_id: str | None = None,
        ttl: int | None = None,
    ) -> IssuedToken:
        """Sign a token for `sub` with `role`, optionally scoped to one visit or thread."""
        for name, value in (("sub", sub), ("visit", visit_id), ("thread", thread_id)):
            if (value is not None or name == "sub") and not _OPAQUE.match(value or ""):
                raise ValueError(f"{name} must be an opaque id: 1-128 of A-Z a-z 0-9 _ . : -")
        if visit_id is not None and thread_id is not None:
            raise ValueError("a token is scoped to a visit or a thread, not both")
        lifetime = self._default_ttl if ttl is None else ttl
        if not 0 < lifetime <= self._max_ttl:
            raise ValueError(f"ttl must be between 1 and {self._max_ttl} seconds")
        now = int(self._clock())
        token_id = secrets.token_urlsafe(12)
        claims: dict[str, object] = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": sub,
            "role": role.value,
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "jti": token_id,
        }
        if visit_id is not None:
            claims["visit"] = visit_id
        if thread_id is not None:
            claims["thread"] = thread_id
        token = jwt.encode(claims, self._secret, algorithm=ALGORITHM)
        return IssuedToken(token=token, token_id=token_id, expires_at=now + lifetime)
