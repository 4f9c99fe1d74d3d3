"""The hotline's sweep: renew this node's lease, apply what the timers say is due, heal, catch up.

What is due is decided by the pure `hotline_sweep.due` from the stored records; each item is
applied as an atomic move that checks it again against fresh records, so several nodes sweeping
at once act on each item once.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence

from careline.signaling.errors import Conflict, NotFound, SignalingError
from careline.signaling.hotline_call import Call, EndReason
from careline.signaling.hotline_changes import HotlineChanges
from careline.signaling.hotline_config import HotlineConfig
from careline.signaling.hotline_local import LocalSockets
from careline.signaling.hotline_moves import (
    attach,
    detach,
    end,
    free_orphaned,
    offer_callback,
    requeue,
)
from careline.signaling.hotline_pharmacists import HotlinePharmacists
from careline.signaling.hotline_pushes import HotlinePushes
from careline.signaling.hotline_store import HotlineChange, HotlineStore
from careline.signaling.hotline_sweep import Due, DueKind, SweepRules, due
from careline.signaling.presence import Presence, PresenceState

log = logging.getLogger(__name__)


class HotlineSweeper:
    """One sweep at a time, from the service's background task (or a test's `tick`)."""

    def __init__(
        self,
        store: HotlineStore,
        changes: HotlineChanges,
        pharmacists: HotlinePharmacists,
        pushes: HotlinePushes,
        local: LocalSockets,
        config: HotlineConfig,
        clock: Callable[[], float],
        node: str,
        *,
        single_node: bool,
        kick: Callable[[], None],
    ) -> None:
        self._store = store
        self._changes = changes
        self._pharmacists = pharmacists
        self._pushes = pushes
        self._local = local
        self._config = config
        self._clock = clock
        self._node = node
        self._single_node = single_node
        self._kick = kick
        self._rules = SweepRules(
            reconnect_grace_seconds=config.reconnect_grace_seconds,
            callback_after_seconds=config.callback_after_seconds,
        )
        self._heartbeat_at = float("-inf")
        # Until then other nodes' leases are not trusted (see `store_lost`).
        self._trust_leases_at = float("-inf")

    def store_lost(self) -> None:
        """A sweep could not reach the store. Every node's lease may run out while it is away
        although the nodes live on; until a lease after it answers again, nodes named by the
        records count as alive (else the first sweep after an outage would take every other
        node's pharmacists and kiosks for gone). A node that really died meanwhile is judged
        one lease late."""
        self._trust_leases_at = self._clock() + self._config.node_lease_seconds
        self._heartbeat_at = float("-inf")

    async def sweep(self) -> None:
        """Apply everything the timers say is due now."""
        now = self._clock()
        alive: set[str] = {self._node}
        if not self._single_node:
            if now >= self._heartbeat_at:
                await self._store.heartbeat(self._node, now + self._config.node_lease_seconds)
                self._heartbeat_at = now + self._config.node_lease_seconds / 3
            alive |= await self._store.live_nodes(now)
        media_mark = self._pushes.media_mark()
        calls = await self._store.open_calls()
        presences = await self._store.presences()
        if now < self._trust_leases_at:
            alive |= {c.kiosk_node for c in calls} | {p.node for p in presences}
        for item in due(calls, presences, alive, now, self._rules):
            try:
                await self._handle(item, now)
            except SignalingError as exc:
                log.info("hotline %s not applied: %s", item.kind.value, exc.code)
        await self._heal(calls, presences)
        await self._pushes.catch_up(calls, presences, media_mark)

    async def _heal(self, calls: Sequence[Call], presences: Sequence[Presence]) -> None:
        """Undo what another node decided while this one looked gone (a late heartbeat).

        A kiosk connected here is attached to its call again; a pharmacist connected here who
        was set offline comes back online (away).
        """
        for call in calls:
            if call.kiosk_id in self._local.kiosks and (
                call.detached_at is not None or call.kiosk_node != self._node
            ):
                with contextlib.suppress(Conflict, NotFound):
                    await self._changes.change_call(
                        call.call_id, lambda c, _p: attach(c, self._node)
                    )
        for presence in presences:
            if presence.sub in self._local.pharmacists and presence.state is PresenceState.OFFLINE:
                await self._pharmacists.online(presence.sub, presence.skills)

    async def _handle(self, item: Due, now: float) -> None:
        if item.kind is DueKind.PHARMACIST_LOST and item.sub is not None:
            await self._pharmacists.gone(item.sub, only_node=None)
        elif item.kind is DueKind.WRAP_UP_OVER and item.sub is not None:
            await self._pharmacists.wrap_up_over(item.sub)
        elif item.kind is DueKind.STRANDED and item.sub is not None:
            await self._pharmacists.free_stranded(item.sub)
        elif item.call_id is not None:
            await self._handle_call(item.kind, item.call_id, now)

    async def _handle_call(self, kind: DueKind, call_id: str, now: float) -> None:
        wrap = self._config.wrap_up_seconds
        change_call = self._changes.change_call
        if kind is DueKind.RING_TIMEOUT:

            def timed_out(call: Call, presence: Presence | None) -> HotlineChange | None:
                if call.ring_deadline is None or call.ring_deadline > self._clock():
                    return None
                return requeue(
                    call, presence, self._clock(), PresenceState.AWAY, reason="ring_timeout"
                )

            await change_call(call_id, timed_out, label="ring_timeout")
            self._kick()
        elif kind is DueKind.KIOSK_LOST:
            await change_call(call_id, lambda c, _p: detach(c, now))
        elif kind is DueKind.KIOSK_GONE:

            def gone(call: Call, presence: Presence | None) -> HotlineChange | None:
                grace = self._config.reconnect_grace_seconds
                if call.detached_at is None or call.detached_at + grace > self._clock():
                    return None
                return end(call, presence, self._clock(), EndReason.KIOSK_DISCONNECTED, wrap)

            await change_call(call_id, gone)
        elif kind is DueKind.ORPHANED:

            def orphaned(call: Call, presence: Presence | None) -> HotlineChange | None:
                return free_orphaned(call, presence, self._clock(), wrap)

            await change_call(call_id, orphaned, label="pharmacist_disconnected")
            self._kick()
        elif kind is DueKind.CALLBACK_OFFER:
            await change_call(call_id, lambda c, _p: offer_callback(c, now))
