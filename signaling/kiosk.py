"""Pharmacy kiosks: the registered device, its secret and whether it may call.

An admin registers a kiosk and gets its device secret once; only a hash of the secret is kept.
The secret is 256 random bits, so one SHA-256 is enough (no password stretching needed), and
it is compared in constant time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import secrets
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Kiosk:
    """A registered kiosk, by opaque ids. `skills` are added to every call it places (e.g. the
    state licence its location needs); `disabled_at` is set while it is disabled."""

    kiosk_id: str
    site: str | None
    skills: tuple[str, ...]
    secret_hash: str
    created_at: float
    version: int = 1
    disabled_at: float | None = None

    @property
    def enabled(self) -> bool:
        """Whether the kiosk may get tokens and call."""
        return self.disabled_at is None


def new_secret() -> str:
    """A fresh device secret (43 URL-safe characters)."""
    return secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    """The stored form of a device secret."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def secret_matches(kiosk: Kiosk, secret: str) -> bool:
    """Constant-time check of a presented secret against the kiosk's stored hash."""
    return hmac.compare_digest(kiosk.secret_hash, hash_secret(secret))


def set_disabled(kiosk: Kiosk, disabled_at: float | None) -> Kiosk:
    """The kiosk disabled (at a time) or enabled (None), one version later."""
    return dataclasses.replace(kiosk, disabled_at=disabled_at, version=kiosk.version + 1)
