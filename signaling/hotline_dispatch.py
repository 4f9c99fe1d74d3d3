"""Routing rounds: queued calls are offered to available pharmacists (longest idle first).

On a single node the round reads the records and runs the pure `hotline_routing.route` over
this node's pharmacists, storing each offer with compare-and-set. With several nodes the round
is one atomic step in the shared store (`SharedDispatch`) over every node's pharmacists, so the
globally longest-idle pharmacist is rung whichever node runs the round, and no call or
pharmacist is ever offered twice; what it stored is then recorded and pushed as usual.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from careline.signaling.errors import Conflict
from careline.signaling.hotline_call import Call
from careline.signaling.hotline_changes import HotlineChanges
from careline.signaling.hotline_cluster import SharedDispatch
from careline.signaling.hotline_config import HotlineConfig
from careline.signaling.hotline_local import LocalSockets
from careline.signaling.hotline_moves import offer
from careline.signaling.hotline_routing import route
from careline.signaling.hotline_store import HotlineStore
from careline.signaling.presence import Presence, PresenceState

#: Offers one shared round may make at most (the store's step stays short); more: another round.
SHARED_ROUND_LIMIT = 64


class HotlineDispatch:
    """Runs routing rounds, one at a time on this node (see the module docstring)."""

    def __init__(
        self,
        store: HotlineStore,
        changes: HotlineChanges,
        local: LocalSockets,
        config: HotlineConfig,
        clock: Callable[[], float],
        node: str,
        *,
        shared: SharedDispatch | None,
        kick: Callable[[], None],
    ) -> None:
        self._store = store
        self._changes = changes
        self._local = local
        self._config = config
        self._clock = clock
        self._node = node
        self._shared = shared
        self._kick = kick
        self._running = asyncio.Lock()

    async def dispatch(self) -> None:
        """One routing round."""
        async with self._running:
            if self._shared is None:
                await self._local_round()
            else:
                await self._shared_round(self._shared)

    async def _shared_round(self, shared: SharedDispatch) -> None:
        offered = await shared.dispatch(
            self._clock(),
            self._config.ring_timeout_seconds,
            self._config.skill_fallback_seconds,
            SHARED_ROUND_LIMIT,
        )
        for item in offered:
            await self._changes.stored(item.change, {item.before.call_id: item.before})
        if len(offered) >= SHARED_ROUND_LIMIT:
            self._kick()

    async def _local_round(self) -> None:
        pharmacists = self._local.pharmacists
        if not pharmacists:
            return
        presences = await self._store.presences()
        mine = [
            p
            for p in presences
            if p.node == self._node and p.state is PresenceState.AVAILABLE and p.sub in pharmacists
        ]
        if not mine:
            return
        calls = await self._store.open_calls()
        now = self._clock()
        assignments = route(calls, mine, now, self._config.skill_fallback_seconds)
        if not assignments:
            return
        results = await asyncio.gather(
            *(self._offer(a.call, a.pharmacist, now) for a in assignments)
        )
        if not all(results):
            self._kick()  # someone else moved first; route again with fresh records

    async def _offer(self, call: Call, pharmacist: Presence, now: float) -> bool:
        """Ring one pharmacist for one call; False if another request moved first."""
        try:
            change = offer(call, pharmacist, now, self._config.ring_timeout_seconds)
            await self._changes.apply(change, {call.call_id: call})
        except Conflict as exc:
            if exc.code in ("hotline.stale", "hotline.bad_transition"):
                return False
            raise
        return True
