"""Order tokens: the signed QR code of a pharmacy order (JWT, HS256 with the order key).

The pharmacy system issues them (`careline token issue --role order` for development); a kiosk
passes one when it calls, and the server checks it here. An order token names an opaque order
id (`sub`) and optionally the skills the call needs (`skills`, e.g. "lang:es"); it carries
`kind: "order"` and the audience `<auth.audience>:order`, and is signed with a key of its own,
so it can never pass as an access token, nor an access token as an order token.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any

import jwt

from careline.server.tokens import IssuedToken
from careline.signaling.errors import Forbidden
from careline.signaling.identity import ORDER_TOKEN_KIND, OrderGrant
from careline.signaling.schemas import OPAQUE_ID_PATTERN

ALGORITHM = "HS256"
_OPAQUE = re.compile(OPAQUE_ID_PATTERN)
_SKILL = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_MAX_SKILLS = 16


class OrderTokens:
    """Signs and verifies order tokens with the order key (an OrderVerifier)."""

    def __init__(
        self,
        secret: str,
        *,
        issuer: str,
        audience: str,
        leeway: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._secret = secret
        self._issuer = issuer
        self._audience = f"{audience}:{ORDER_TOKEN_KIND}"
        self._leeway = leeway
        self._clock = clock

    def issue(self, order_id: str, ttl: int, skills: Sequence[str] = ()) -> IssuedToken:
        """Sign an order token (for development and tests; the pharmacy system does this)."""
        if not _OPAQUE.match(order_id):
            raise ValueError("the order id must be an opaque id: 1-128 of A-Z a-z 0-9 _ . : -")
        if ttl < 1:
            raise ValueError("ttl must be at least 1 second")
        if len(skills) > _MAX_SKILLS or not all(_SKILL.match(s) for s in skills):
            raise ValueError("skills are at most 16 tags of 1-64 of A-Z a-z 0-9 _ . : -")
        now = int(self._clock())
        token_id = secrets.token_urlsafe(12)
        claims: dict[str, Any] = {
            "iss": self._issuer,
            "aud": self._audience,
            "kind": ORDER_TOKEN_KIND,
            "sub": order_id,
            "iat": now,
            "exp": now + ttl,
            "jti": token_id,
        }
        if skills:
            claims["skills"] = list(skills)
        token = jwt.encode(claims, self._secret, algorithm=ALGORITHM)
        return IssuedToken(token=token, token_id=token_id, expires_at=now + ttl)

    def verify_order(self, token: str) -> OrderGrant:
        """The order a token names; Forbidden `hotline.order_expired` or `hotline.order_invalid`."""
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                options={"require": ["exp", "iat", "sub", "jti"], "verify_exp": False},
            )
        except jwt.InvalidTokenError:
            raise Forbidden("the order code is not valid", code="hotline.order_invalid") from None
        exp, sub, skills = claims.get("exp"), claims.get("sub"), claims.get("skills", [])
        if (
            claims.get("kind") != ORDER_TOKEN_KIND
            or not isinstance(exp, int | float)
            or isinstance(exp, bool)
            or not isinstance(sub, str)
            or not _OPAQUE.match(sub)
            or not isinstance(skills, list)
            or len(skills) > _MAX_SKILLS
            or not all(isinstance(s, str) and _SKILL.match(s) for s in skills)
        ):
            raise Forbidden("the order code is not valid", code="hotline.order_invalid")
        if exp <= self._clock() - self._leeway:
            raise Forbidden("the order code has expired", code="hotline.order_expired")
        return OrderGrant(
            order_id=sub,
            skills=tuple(sorted(set(skills))),
            expires_at=float(exp),
            token_id=str(claims.get("jti")),
        )
