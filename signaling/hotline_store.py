"""The durable store of the hotline (implemented per backend): kiosks, calls, presence, nodes.

Calls and presences change only through `apply`, an atomic compare-and-set over several records:
each record carries the version it will have once stored, and is written only if the stored one
is exactly one version older (or absent, for version 1). If any record fails its check, nothing
is written (`Conflict` with code `hotline.stale`). That is what makes dispatch safe across nodes:
two nodes offering the same call, or the same pharmacist, cannot both succeed. A new open call of
a kiosk that already has an open call is refused with `hotline.already_calling`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from careline.signaling.hotline_call import Call
from careline.signaling.kiosk import Kiosk
from careline.signaling.presence import Presence


@dataclass(frozen=True, slots=True)
class HotlineChange:
    """Records to store together, each at its new version (see `HotlineStore.apply`)."""

    calls: tuple[Call, ...] = ()
    presences: tuple[Presence, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.calls or self.presences)


class HotlineStore(Protocol):
    """Hotline state. Writes are durable when they return; StoreUnavailable otherwise."""

    async def add_kiosk(self, kiosk: Kiosk) -> None:
        """Register a kiosk (Conflict `hotline.kiosk_exists` if the id is taken)."""
        ...

    async def get_kiosk(self, kiosk_id: str) -> Kiosk | None:
        """The kiosk, or None."""
        ...

    async def update_kiosk(self, kiosk: Kiosk) -> None:
        """Store the kiosk at its new version (compare-and-set; Conflict `hotline.stale`)."""
        ...

    async def set_skills(self, sub: str, skills: Sequence[str]) -> None:
        """A pharmacist's skills (their profile, set by an admin)."""
        ...

    async def get_skills(self, sub: str) -> tuple[str, ...]:
        """A pharmacist's skills (empty if none were set)."""
        ...

    async def apply(self, change: HotlineChange) -> None:
        """Store every record of `change` or none (see the module docstring)."""
        ...

    async def get_call(self, call_id: str) -> Call | None:
        """The call, or None."""
        ...

    async def open_calls(self) -> Sequence[Call]:
        """Every queued, ringing or connected call (in no particular order)."""
        ...

    async def open_call_of(self, kiosk_id: str) -> Call | None:
        """The kiosk's open call, if it has one."""
        ...

    async def recent_calls(self, since: float, limit: int = 10_000) -> Sequence[Call]:
        """Calls placed at or after `since`, oldest first, at most `limit`."""
        ...

    async def get_presence(self, sub: str) -> Presence | None:
        """The pharmacist's presence, or None if they never connected."""
        ...

    async def presences(self) -> Sequence[Presence]:
        """Every pharmacist's presence."""
        ...

    async def heartbeat(self, node: str, until: float) -> None:
        """Node `node` is alive until `until` (its lease)."""
        ...

    async def live_nodes(self, now: float) -> frozenset[str]:
        """Nodes whose lease has not run out at `now`."""
        ...
