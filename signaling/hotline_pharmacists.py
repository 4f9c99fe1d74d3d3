"""Pharmacist presence as the service drives it: online, chosen states, gone, freed, ready.

Each step reads the pharmacist's presence (and call), applies a pure move (presence.py,
hotline_moves.py) and stores it through HotlineChanges; a pharmacist who leaves frees their
call first (re-queued while ringing, ended while busy), so nobody is left ringing or busy.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

from careline.signaling.errors import Conflict, NotFound
from careline.signaling.hotline_call import EndReason
from careline.signaling.hotline_changes import HotlineChanges
from careline.signaling.hotline_moves import end, requeue, set_presence
from careline.signaling.hotline_store import HotlineStore
from careline.signaling.hotline_sweep import stranded
from careline.signaling.presence import Presence, PresenceState, come_online, move_presence

log = logging.getLogger(__name__)


class HotlinePharmacists:
    """Presence changes of pharmacists (see the module docstring).

    `kick` asks for a routing round; it is called whenever a pharmacist may have become free.
    """

    def __init__(
        self,
        store: HotlineStore,
        changes: HotlineChanges,
        node: str,
        wrap_up_seconds: float,
        clock: Callable[[], float],
        kick: Callable[[], None],
    ) -> None:
        self._store = store
        self._changes = changes
        self._node = node
        self._wrap_up_seconds = wrap_up_seconds
        self._clock = clock
        self._kick = kick

    async def get(self, sub: str) -> Presence:
        """The pharmacist's presence (NotFound `hotline.no_call` if they never connected)."""
        presence = await self._store.get_presence(sub)
        if presence is None:
            raise NotFound("not online", code="hotline.no_call")
        return presence

    async def online(self, sub: str, skills: tuple[str, ...]) -> Presence | None:
        """The pharmacist's console is on this node: away if they were offline, else as is."""
        return await self._changes.change_presence(
            sub, lambda p: come_online(p, sub, self._node, skills, self._clock()), create=True
        )

    async def choose(self, sub: str, target: PresenceState) -> Presence:
        """The pharmacist chooses available (also: ends wrap-up early) or away."""

        def choose(presence: Presence | None) -> Presence | None:
            if presence is None:
                raise Conflict("not online", code="hotline.bad_transition")
            return set_presence(presence, target, self._clock())

        presence = await self._changes.change_presence(sub, choose)
        if presence is None:
            presence = await self.get(sub)
        if presence.state is PresenceState.AVAILABLE:
            self._kick()
        return presence

    async def set_skills(self, sub: str, skills: tuple[str, ...]) -> None:
        """New skills of a pharmacist, also on their live presence."""

        def update(presence: Presence | None) -> Presence | None:
            if presence is None or presence.skills == skills:
                return None
            return dataclasses.replace(presence, skills=skills, version=presence.version + 1)

        await self._changes.change_presence(sub, update)

    async def wrap_up_over(self, sub: str) -> None:
        """The pharmacist's wrap-up time has passed: available."""

        def ready(presence: Presence | None) -> Presence | None:
            if presence is None or presence.state is not PresenceState.WRAP_UP:
                return None
            if presence.wrap_until is None or presence.wrap_until > self._clock():
                return None
            return move_presence(presence, PresenceState.AVAILABLE, self._clock())

        if await self._changes.change_presence(sub, ready) is not None:
            self._kick()

    async def free_stranded(self, sub: str) -> None:
        """A pharmacist ringing or busy for a call that moved on: available or in wrap-up."""
        presence = await self._store.get_presence(sub)
        if presence is None or presence.call_id is None:
            return
        call = await self._store.get_call(presence.call_id)
        wrap = self._wrap_up_seconds

        def free(current: Presence | None) -> Presence | None:
            if current is None or current.version != presence.version:
                return None  # it moved on meanwhile; the next sweep looks again
            now = self._clock()
            if current.state is PresenceState.RINGING:
                return move_presence(current, PresenceState.AVAILABLE, now, keep_idle=True)
            return move_presence(
                current, PresenceState.WRAP_UP, now, call_id=current.call_id, wrap_until=now + wrap
            )

        if stranded(presence, call):
            log.warning("hotline: freed a stranded pharmacist (%s)", presence.state.value)
            await self._changes.change_presence(sub, free)
            self._kick()

    async def gone(self, sub: str, only_node: str | None) -> None:
        """A pharmacist's console is gone: free their call (re-queue or end it), then offline.

        With `only_node`, only if their presence is still on that node (else they are connected
        on another node now).
        """
        presence = await self._store.get_presence(sub)
        if presence is None or presence.state is PresenceState.OFFLINE:
            return
        if only_node is not None and presence.node != only_node:
            return
        wrap = self._wrap_up_seconds
        if presence.call_id is not None and presence.state is PresenceState.RINGING:
            await self._changes.change_call(
                presence.call_id,
                lambda c, p: requeue(c, p, self._clock(), PresenceState.OFFLINE),
                sub=sub,
                label="pharmacist_disconnected",
            )
            self._kick()
        elif presence.call_id is not None and presence.state is PresenceState.BUSY:
            await self._changes.change_call(
                presence.call_id,
                lambda c, p: end(
                    c,
                    p,
                    self._clock(),
                    EndReason.PHARMACIST_DISCONNECTED,
                    wrap,
                    pharmacist_to=PresenceState.OFFLINE,
                ),
                sub=sub,
            )

        def offline(current: Presence | None) -> Presence | None:
            if current is None or current.state is PresenceState.OFFLINE:
                return None
            if only_node is not None and current.node != only_node:
                return None
            return move_presence(current, PresenceState.OFFLINE, self._clock())

        await self._changes.change_presence(sub, offline)
