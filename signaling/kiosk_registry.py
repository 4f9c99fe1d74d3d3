"""The kiosk registry: admins register, disable and re-enable kiosks; kiosks prove their secret.

Only a hash of each device secret is stored. A wrong secret and an unknown kiosk id answer the
same error, so the endpoint does not reveal which kiosk ids exist.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence

from careline.signaling.errors import AuthError, Conflict, Forbidden, NotFound
from careline.signaling.hotline_store import HotlineStore
from careline.signaling.identity import Principal, Role
from careline.signaling.kiosk import Kiosk, hash_secret, new_secret, secret_matches, set_disabled


class KioskRegistry:
    """Kiosk devices on the HotlineStore.

    Concurrency: enabling and disabling are compare-and-set on the kiosk's version, retried.
    """

    def __init__(self, store: HotlineStore, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock

    async def register(
        self,
        principal: Principal,
        kiosk_id: str | None,
        site: str | None,
        skills: Sequence[str],
    ) -> tuple[Kiosk, str]:
        """An admin registers a kiosk; returns it with its device secret (shown only now)."""
        _require_admin(principal)
        secret = new_secret()
        kiosk = Kiosk(
            kiosk_id=kiosk_id or f"k-{secrets.token_urlsafe(9)}",
            site=site,
            skills=tuple(sorted(set(skills))),
            secret_hash=hash_secret(secret),
            created_at=self._clock(),
        )
        await self._store.add_kiosk(kiosk)
        return kiosk, secret

    async def get(self, principal: Principal, kiosk_id: str) -> Kiosk:
        """A kiosk, for admins."""
        _require_admin(principal)
        return await self._load(kiosk_id)

    async def check_secret(self, kiosk_id: str, secret: str) -> Kiosk:
        """The kiosk whose secret this is, if it may get a token.

        Raises AuthError `hotline.bad_kiosk_secret` (unknown id or wrong secret) or Forbidden
        `hotline.kiosk_disabled`.
        """
        kiosk = await self._store.get_kiosk(kiosk_id)
        if kiosk is None or not secret_matches(kiosk, secret):
            raise AuthError("unknown kiosk or wrong secret", code="hotline.bad_kiosk_secret")
        if not kiosk.enabled:
            raise Forbidden("this kiosk is disabled", code="hotline.kiosk_disabled")
        return kiosk

    async def require_enabled(self, kiosk_id: str) -> Kiosk:
        """The kiosk behind a kiosk token, if it is registered and enabled."""
        kiosk = await self._store.get_kiosk(kiosk_id)
        if kiosk is None:
            raise Forbidden("this kiosk is not registered", code="hotline.unknown_kiosk")
        if not kiosk.enabled:
            raise Forbidden("this kiosk is disabled", code="hotline.kiosk_disabled")
        return kiosk

    async def set_enabled(self, principal: Principal, kiosk_id: str, enabled: bool) -> Kiosk:
        """An admin disables (or re-enables) a kiosk; a no-op if it already is."""
        _require_admin(principal)
        for _ in range(5):
            kiosk = await self._load(kiosk_id)
            if kiosk.enabled == enabled:
                return kiosk
            changed = set_disabled(kiosk, None if enabled else self._clock())
            try:
                await self._store.update_kiosk(changed)
            except Conflict as exc:
                if exc.code == "hotline.stale":
                    continue
                raise
            return changed
        raise Conflict("the kiosk kept changing; try again", code="hotline.stale")

    async def _load(self, kiosk_id: str) -> Kiosk:
        kiosk = await self._store.get_kiosk(kiosk_id)
        if kiosk is None:
            raise NotFound("no such kiosk", code="hotline.kiosk_not_found")
        return kiosk


def _require_admin(principal: Principal) -> None:
    if principal.role is not Role.ADMIN:
        raise Forbidden("only admins manage kiosks", code="hotline.forbidden")
