"""Who is calling: roles, the authenticated principal, and the Authenticator Protocol."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol


class Role(enum.StrEnum):
    """The role a token grants; decides what its holder may do."""

    PARENT = "parent"
    CLINICIAN = "clinician"
    PHARMACIST = "pharmacist"
    KIOSK = "kiosk"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller. Only opaque ids: never names or other personal data."""

    sub: str
    role: Role
    token_id: str
    expires_at: float
    visit_id: str | None = None
    thread_id: str | None = None

    def describe(self) -> str:
        """A log-safe label: role and opaque subject id only."""
        return f"{self.role.value}:{self.sub}"


#: The token kind of order QR codes. Not a Role: an order token authenticates nobody, it only
#: names an order a kiosk calls about (signed by the pharmacy system with the order key).
ORDER_TOKEN_KIND = "order"  # noqa: S105 - a token kind, not a secret


@dataclass(frozen=True, slots=True)
class OrderGrant:
    """A verified order token: the opaque order id and the skills the call needs."""

    order_id: str
    skills: tuple[str, ...]
    expires_at: float
    token_id: str


class OrderVerifier(Protocol):
    """Checks an order token; raises signaling.errors.Forbidden (hotline.order_*) if refused."""

    def verify_order(self, token: str) -> OrderGrant: ...


class Authenticator(Protocol):
    """Turns a bearer token into a Principal, or raises signaling.errors.AuthError with a code."""

    async def authenticate(self, token: str | None) -> Principal: ...


def token_revocation_key(token_id: str) -> str:
    """Revocation key of one token."""
    return f"jti:{token_id}"


def subject_revocation_key(sub: str, scope: str | None = None) -> str:
    """Revocation key of every token of `sub`, or only those scoped to `scope` (a visit, ...)."""
    return f"sub:{sub}" if scope is None else f"scope:{scope}:sub:{sub}"


def revocation_keys(principal: Principal) -> list[str]:
    """Every key whose revocation invalidates this principal's token."""
    keys = [token_revocation_key(principal.token_id), subject_revocation_key(principal.sub)]
    for scope in (principal.visit_id, principal.thread_id):
        if scope is not None:
            keys.append(subject_revocation_key(principal.sub, scope))
    return keys
