"""What the hotline pushes to this node's sockets, and what it last pushed.

Every stored change reaches here (a ChangeListener): the kiosk and pharmacists of a call hear of
its new state, a pharmacist of their presence. Changes made by other nodes are caught up from
the store: at every sweep, and at once when that node sends a NodeNotice. Queue positions,
queue summaries and the figures are refreshed at most every `position_update_seconds`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from careline.signaling.errors import SignalingError
from careline.signaling.hotline_call import Call, CallState
from careline.signaling.hotline_cluster import NodeBus, NodeNotice
from careline.signaling.hotline_config import PHARMACISTS_ROOM, HotlineChannel, HotlineConfig
from careline.signaling.hotline_local import LocalSockets
from careline.signaling.hotline_media import HotlineMedia
from careline.signaling.hotline_observer import HotlineObserver
from careline.signaling.hotline_routing import queue_order
from careline.signaling.hotline_schemas import CallView, PositionView
from careline.signaling.hotline_stats import (
    HotlineStats,
    estimate_wait,
    own_figures,
    staffed,
    summarize,
)
from careline.signaling.hotline_store import HotlineStore
from careline.signaling.hotline_views import call_view, presence_view
from careline.signaling.presence import Presence

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Pushed:
    """What a local kiosk was last told about its queue position."""

    position: int | None = None
    estimate: float | None = None
    at: float = 0.0


class HotlinePushes:
    """Pushes to this node's kiosks and pharmacists; tells other nodes of changes to theirs.

    Concurrency: called from request handlers and the sweep alike; pushes may interleave, and a
    push may follow the reply of a later request (clients order calls by state and times).
    """

    def __init__(
        self,
        store: HotlineStore,
        local: LocalSockets,
        media: HotlineMedia,
        channel: Callable[[], HotlineChannel],
        config: HotlineConfig,
        clock: Callable[[], float],
        observer: HotlineObserver,
        node: str,
        bus: NodeBus | None = None,
    ) -> None:
        self._store = store
        self._local = local
        self._media = media
        self._channel = channel
        self._config = config
        self._clock = clock
        self._observer = observer
        self._node = node
        self._bus = bus
        self._seen_calls: dict[str, Call] = {}
        self._seen_presence: dict[str, int] = {}
        self._pushed: dict[str, _Pushed] = {}
        self.stats: HotlineStats | None = None
        self._records: Sequence[Call] = ()
        self._stats_at = float("-inf")
        self._queue_pushed_at = float("-inf")

    # -- what was pushed -------------------------------------------------------------------------

    def seen(self, call: Call) -> None:
        """A local socket was told of `call` as it is."""
        self._seen_calls[call.call_id] = call

    def pushed_position(self, kiosk_id: str, view: CallView, at: float) -> None:
        """A kiosk was told its position and estimate (in a reply)."""
        self._pushed[kiosk_id] = _Pushed(view.position, view.estimated_wait_seconds, at)

    def forget_kiosk(self, kiosk_id: str) -> None:
        """The kiosk's socket left this node."""
        self._pushed.pop(kiosk_id, None)

    def forget_pharmacist(self, sub: str) -> None:
        """The pharmacist's socket left this node."""
        self._seen_presence.pop(sub, None)

    # -- ChangeListener --------------------------------------------------------------------------

    async def call_changed(self, old: Call | None, new: Call, label: str | None = None) -> None:
        """Push a call's change to its kiosk and pharmacists on this node; end its media."""
        await self._notify_call(old, new, label)
        if new.kiosk_node != self._node:
            await self._tell(new.kiosk_node, NodeNotice(call_id=new.call_id))

    async def presence_changed(self, presence: Presence) -> None:
        """Push a presence to its pharmacist if they are on this node, else tell their node."""
        if presence.sub in self._local.pharmacists:
            self._seen_presence[presence.sub] = presence.version
            await self.push_presence(presence)
        elif presence.node != self._node:
            notice = NodeNotice(call_id=presence.call_id, sub=presence.sub)
            await self._tell(presence.node, notice)

    async def _tell(self, node: str, notice: NodeNotice) -> None:
        """Send a notice to another node (a hint: failures only delay its push to a sweep)."""
        if self._bus is None:
            return
        try:
            await self._bus.publish(node, notice)
        except SignalingError as exc:
            log.info("hotline notice to another node not sent: %s", exc.code)
        except ConnectionError:
            log.info("hotline notice to another node not sent: connection lost")

    async def _notify_call(self, old: Call | None, new: Call, label: str | None = None) -> None:
        """Push a call's change to its kiosk and pharmacists on this node; end its media."""
        kiosks, pharmacists = self._local.kiosks, self._local.pharmacists
        concerns = new.kiosk_id in kiosks or any(
            p is not None and p in pharmacists
            for p in (new.pharmacist, None if old is None else old.pharmacist)
        )
        if concerns and new.is_open:
            self._seen_calls[new.call_id] = new
        else:
            self._seen_calls.pop(new.call_id, None)
        if not new.is_open:
            await self._media.call_ended(new)
        channel = self._channel()
        if old is not None and new.is_open and old.kiosk_node != new.kiosk_node:
            await self._media_moved(new)
        kiosk_sid = kiosks.get(new.kiosk_id)
        if kiosk_sid is not None and new.kiosk_node == self._node:
            changed_state = old is None or old.state is not new.state
            if changed_state and old is not None:
                await channel.emit("hotline.call", call_view(new, as_kiosk=True), kiosk_sid)
            if (
                old is not None
                and old.callback_offered_at is None
                and new.callback_offered_at is not None
            ):
                payload = {
                    "call_id": new.call_id,
                    "waited_seconds": round(new.callback_offered_at - new.enqueued_at, 3),
                }
                await channel.emit("hotline.callback_offer", payload, kiosk_sid)
        previous = None if old is None else old.pharmacist
        if (
            old is not None
            and old.state is CallState.RINGING
            and new.state is not CallState.CONNECTED
            and previous is not None
            and (new.state is not CallState.RINGING or new.pharmacist != previous)
        ):
            sid = pharmacists.get(previous)
            if sid is not None:
                reason = new.state.value
                if new.state is CallState.QUEUED:
                    reason = label or "requeued"
                await channel.emit(
                    "hotline.offer_withdrawn", {"call_id": new.call_id, "reason": reason}, sid
                )
        if new.pharmacist is None:
            return
        sid = pharmacists.get(new.pharmacist)
        if sid is None or (old is not None and old.state is new.state):
            return
        if new.state is CallState.RINGING:
            await channel.emit("hotline.offer", call_view(new, as_kiosk=False), sid)
        elif new.state is not CallState.QUEUED:
            await channel.emit("hotline.call", call_view(new, as_kiosk=False), sid)

    async def _media_moved(self, call: Call) -> None:
        """The kiosk reconnected to another node, which now holds the call's media: close this
        node's sessions of the call if it is not that node, and tell a pharmacist here on the
        call to start their media again (it answers `hotline.wrong_node` with the new node)."""
        if call.kiosk_node != self._node:
            await self._media.call_ended(call)
        sid = None if call.pharmacist is None else self._local.pharmacists.get(call.pharmacist)
        if sid is not None and call.state is CallState.CONNECTED:
            await self._channel().emit("hotline.media_moved", {"call_id": call.call_id}, sid)

    # -- catching up with other nodes ------------------------------------------------------------

    def media_mark(self) -> int:
        """Taken before the sweep reads the open calls it passes to `catch_up`."""
        return self._media.mark()

    async def catch_up(
        self, calls: Sequence[Call], presences: Sequence[Presence], media_mark: int
    ) -> None:
        """Push changes other nodes made to calls and presences of this node's sockets, and
        close the media sessions here of calls (`calls`: the open ones, read after `media_mark`)
        that ended or moved to another node."""
        kiosks, pharmacists = self._local.kiosks, self._local.pharmacists
        by_id = {c.call_id: c for c in calls}
        for call in calls:
            if call.kiosk_id in kiosks or call.pharmacist in pharmacists:
                seen = self._seen_calls.get(call.call_id)
                if seen is None or seen.version < call.version:
                    await self._notify_call(seen, call)
        for call_id, seen in list(self._seen_calls.items()):
            if call_id not in by_id:
                latest = await self._store.get_call(call_id)
                if latest is None:
                    self._seen_calls.pop(call_id, None)
                elif latest.version > seen.version:
                    await self._notify_call(seen, latest)
        for presence in presences:
            await self._catch_up_presence(presence)
        await self._media.close_stale(calls, self._node, media_mark)

    async def catch_up_notices(self, notices: Iterable[NodeNotice]) -> None:
        """Push what other nodes said changed (read from the store: notices are hints)."""
        for notice in notices:
            if notice.call_id is not None:
                call = await self._store.get_call(notice.call_id)
                if call is not None and (
                    call.call_id in self._seen_calls
                    or call.kiosk_id in self._local.kiosks
                    or call.pharmacist in self._local.pharmacists
                ):
                    seen = self._seen_calls.get(call.call_id)
                    if seen is None or seen.version < call.version:
                        await self._notify_call(seen, call)
            if notice.sub is not None and notice.sub in self._local.pharmacists:
                presence = await self._store.get_presence(notice.sub)
                if presence is not None:
                    await self._catch_up_presence(presence)

    async def _catch_up_presence(self, presence: Presence) -> None:
        known = self._seen_presence.get(presence.sub, 0)
        if presence.sub in self._local.pharmacists and known < presence.version:
            self._seen_presence[presence.sub] = presence.version
            await self.push_presence(presence)

    # -- presence, positions, figures ------------------------------------------------------------

    async def push_presence(self, presence: Presence) -> None:
        """Tell a pharmacist on this node their presence."""
        sid = self._local.pharmacists.get(presence.sub)
        if sid is not None:
            await self._channel().emit("hotline.presence", presence_view(presence), sid)

    async def push_positions(self) -> None:
        """Tell each waiting kiosk on this node its position and estimated wait (throttled)."""
        stats = await self.refresh_stats()
        kiosks = self._local.kiosks
        if not kiosks:
            return
        calls = await self._store.open_calls()
        presences = await self._store.presences()
        handle = stats.average_handle_seconds or self._config.default_handle_seconds
        count = staffed(presences)
        now = self._clock()
        every = self._config.position_update_seconds
        channel = self._channel()
        for position, call in enumerate(queue_order(calls), start=1):
            sid = kiosks.get(call.kiosk_id)
            if sid is None or call.kiosk_node != self._node:
                continue
            estimate = estimate_wait(position, count, handle)
            pushed = self._pushed.setdefault(call.kiosk_id, _Pushed(at=now))
            if (pushed.position, pushed.estimate) == (
                position,
                estimate,
            ) or now - pushed.at < every:
                continue
            pushed.position, pushed.estimate, pushed.at = position, estimate, now
            view = PositionView(
                call_id=call.call_id, position=position, estimated_wait_seconds=estimate
            )
            await channel.emit("hotline.position", view, sid)
        if self._local.pharmacists and now - self._queue_pushed_at >= every:
            self._queue_pushed_at = now
            queued = [c for c in calls if c.state is CallState.QUEUED]
            summary = {
                "queue_length": len(queued),
                "longest_wait_seconds": round(
                    max((now - c.enqueued_at for c in queued), default=0.0), 3
                ),
            }
            await channel.emit("hotline.queue", summary, PHARMACISTS_ROOM)

    async def refresh_stats(self, force: bool = False, sub: str | None = None) -> HotlineStats:
        """The figures, recomputed from the store at most every `position_update_seconds`.

        With `sub`, they carry that pharmacist's own figures (`mine`) from the same records.
        """
        now = self._clock()
        if (
            self.stats is not None
            and not force
            and now - self._stats_at < self._config.position_update_seconds
        ):
            return self._with_mine(self.stats, sub)
        window = self._config.stats_window_seconds
        records = await self._store.recent_calls(now - window)
        stats = summarize(
            records,
            await self._store.open_calls(),
            await self._store.presences(),
            now,
            window_seconds=window,
            service_level_seconds=self._config.service_level_seconds,
            wrap_up_seconds=self._config.wrap_up_seconds,
        )
        self.stats, self._stats_at, self._records = stats, now, records
        self._observer.snapshot(stats)
        return self._with_mine(stats, sub)

    def _with_mine(self, stats: HotlineStats, sub: str | None) -> HotlineStats:
        if sub is None:
            return stats
        since = self._stats_at - stats.window_seconds
        return dataclasses.replace(stats, mine=own_figures(self._records, sub, since))

    def kiosk_view(
        self, call: Call, calls: Sequence[Call], presences: Sequence[Presence]
    ) -> CallView:
        """The kiosk's view of its call, with its queue position and estimated wait."""
        position = next(
            (i for i, c in enumerate(queue_order(calls), start=1) if c.call_id == call.call_id),
            None,
        )
        estimate = None
        if position is not None:
            handle = self._config.default_handle_seconds
            if self.stats is not None and self.stats.average_handle_seconds is not None:
                handle = self.stats.average_handle_seconds
            estimate = estimate_wait(position, staffed(presences), handle)
        current = next((c for c in calls if c.call_id == call.call_id), call)
        return call_view(current, as_kiosk=True, position=position, estimated_wait=estimate)
