"""The pharmacist hotline as a service: calls, queue, presence, dispatch, timers, media.

The HotlineStore is the truth (calls, presence, kiosks); every change is an atomic move
(hotline_moves) stored with compare-and-set, so several nodes sharing one store never give a
call to two pharmacists. This node keeps only its live sockets, its open media sessions and
what it last pushed to them. One background task per node sweeps the timers kept in the records
(ring timeouts, wrap-up, kiosk reconnect grace, callback offers, lost nodes), routes queued calls
to this node's available pharmacists, pushes queue positions and refreshes the figures.

Media of an accepted call goes through the MediaGateway (one SFU room per call, two sessions);
this service claims its session ids on the MediaRouter and relays the media events to sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from careline.signaling.audit_writer import AuditWriter
from careline.signaling.errors import Conflict, Forbidden, NotFound, SignalingError
from careline.signaling.hotline_call import Call, CallState, EndReason
from careline.signaling.hotline_moves import (
    accept,
    attach,
    detach,
    end,
    offer,
    offer_callback,
    request_callback,
    requeue,
    set_presence,
)
from careline.signaling.hotline_observer import HotlineObserver, NullHotlineObserver
from careline.signaling.hotline_record import call_steps
from careline.signaling.hotline_routing import queue_order, route
from careline.signaling.hotline_schemas import CallView, PositionView
from careline.signaling.hotline_stats import HotlineStats, estimate_wait, staffed, summarize
from careline.signaling.hotline_store import HotlineChange, HotlineStore
from careline.signaling.hotline_sweep import Due, DueKind, SweepRules, due, stranded
from careline.signaling.hotline_views import call_view, presence_view
from careline.signaling.identity import OrderVerifier, Principal, Role
from careline.signaling.kiosk_registry import KioskRegistry
from careline.signaling.media_gateway import MediaGateway, MediaOffer, TrackInfo
from careline.signaling.media_router import MediaRouter
from careline.signaling.presence import Presence, PresenceState, come_online, move_presence
from careline.signaling.schemas import IceServerInfo
from careline.signaling.stores import AuditStore

log = logging.getLogger(__name__)

#: Room of every pharmacist console on this node (queue summaries).
PHARMACISTS_ROOM = "hotline:pharmacists"
_TRIES = 8


class HotlineChannel(Protocol):
    """How the service reaches clients (the /hotline socket.io namespace implements it)."""

    async def emit(self, event: str, data: Any, to: str) -> None:
        """Send `event` to one socket id or room."""

    async def enter_room(self, sid: str, room: str) -> None:
        """Add a socket to a room."""

    async def disconnect(self, sid: str) -> None:
        """Close a socket."""


@dataclass(frozen=True, slots=True)
class HotlineConfig:
    """The `[hotline]` settings the service runs with (times in seconds)."""

    ring_timeout_seconds: float = 20.0
    wrap_up_seconds: float = 30.0
    skill_fallback_seconds: float = 60.0
    callback_after_seconds: float = 300.0
    service_level_seconds: float = 60.0
    position_update_seconds: float = 5.0
    reconnect_grace_seconds: float = 30.0
    default_handle_seconds: float = 240.0
    stats_window_seconds: float = 3600.0
    sweep_seconds: float = 0.25
    node_lease_seconds: float = 15.0
    max_queue: int = 1000
    video_codec: str = "vp8"


@dataclass(slots=True)
class _Socket:
    sid: str
    role: Role
    sub: str


@dataclass(slots=True)
class _LockEntry:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


@dataclass(slots=True)
class _Pushed:
    """What a local kiosk was last told about its queue position."""

    position: int | None = None
    estimate: float | None = None
    at: float = 0.0


class HotlineService:
    """Kiosk calls, pharmacist presence, routing and the video session of an answered call.

    Concurrency: methods may be called from concurrent tasks. Every state change is a
    compare-and-set in the store, retried on `hotline.stale`, so concurrent requests (on this
    node or others) cannot both win. Pushes follow stored changes; a push may arrive after the
    reply of a later request, so clients order call updates by `state` and the records' times.
    """

    def __init__(
        self,
        store: HotlineStore,
        audit: AuditStore,
        kiosks: KioskRegistry,
        orders: OrderVerifier,
        media: MediaGateway,
        router: MediaRouter,
        config: HotlineConfig,
        *,
        ice_servers: Callable[[str], Sequence[IceServerInfo]],
        clock: Callable[[], float] = time.time,
        observer: HotlineObserver | None = None,
        single_node: bool = True,
        node_id: str | None = None,
    ) -> None:
        self._store = store
        self._audit = AuditWriter(audit)
        self._kiosks = kiosks
        self._orders = orders
        self._media = media
        self._router = router
        self._config = config
        self._ice_servers = ice_servers
        self._clock = clock
        self._observer: HotlineObserver = observer or NullHotlineObserver()
        self._single_node = single_node
        self.node = node_id or f"n-{secrets.token_urlsafe(6)}"
        self._rules = SweepRules(
            reconnect_grace_seconds=config.reconnect_grace_seconds,
            callback_after_seconds=config.callback_after_seconds,
        )
        self._channel: HotlineChannel | None = None
        self._sockets: dict[str, _Socket] = {}
        self._kiosk_sid: dict[str, str] = {}
        self._pharmacist_sid: dict[str, str] = {}
        self._sessions: dict[str, str] = {}  # media session id -> socket id, on this node
        self._seen_calls: dict[str, Call] = {}
        self._seen_presence: dict[str, int] = {}
        self._pushed: dict[str, _Pushed] = {}
        self._stats: HotlineStats | None = None
        self._stats_at = float("-inf")
        self._heartbeat_at = float("-inf")
        self._queue_pushed_at = float("-inf")
        self._kick = asyncio.Event()
        self._dispatching = asyncio.Lock()
        self._subject_locks: dict[str, _LockEntry] = {}
        self._loop_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def bind(self, channel: HotlineChannel) -> None:
        """Attach the channel (the namespace is built after the service)."""
        self._channel = channel

    @property
    def channel(self) -> HotlineChannel:
        if self._channel is None:
            raise RuntimeError("HotlineService has no channel bound")
        return self._channel

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the audit writer and this node's sweep/dispatch task."""
        self._audit.start()
        if self._loop_task is None and not self._closed:
            self._loop_task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        """Stop the task, close this node's media sessions, flush the audit trail; safe twice."""
        if self._closed:
            return
        self._closed = True
        task, self._loop_task = self._loop_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for task_ in list(self._tasks):
            task_.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for session_id in list(self._sessions):
            await self._close_session(session_id)
        await self._audit.close()

    async def _run(self) -> None:
        """Sweep every `sweep_seconds`; dispatch at once when kicked (new call, free pharmacist)."""
        loop = asyncio.get_running_loop()
        next_sweep = loop.time()
        while True:
            timeout = max(0.0, next_sweep - loop.time())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._kick.wait()
            self._kick.clear()
            try:
                if loop.time() >= next_sweep:
                    next_sweep = loop.time() + self._config.sweep_seconds
                    await self.tick()
                else:
                    await self.dispatch()
            except SignalingError as exc:
                log.warning("hotline sweep failed: %s", exc.code)
            except ConnectionError:
                log.info("hotline sweep lost a connection")
            except Exception:
                log.exception("hotline sweep failed")

    def kick(self) -> None:
        """Ask the background task to route calls now."""
        self._kick.set()

    # -- connections -----------------------------------------------------------------------------

    async def admit(self, principal: Principal) -> None:
        """May this principal connect to /hotline? Kiosks must be registered and enabled."""
        if principal.role is Role.KIOSK:
            await self._kiosks.require_enabled(principal.sub)
        elif principal.role is not Role.PHARMACIST:
            raise Forbidden("only kiosks and pharmacists use the hotline", code="hotline.forbidden")

    async def connected(self, sid: str, principal: Principal) -> None:
        """A kiosk or pharmacist socket connected (after `admit`)."""
        self._sockets[sid] = _Socket(sid=sid, role=principal.role, sub=principal.sub)
        async with self._subject_lock(principal.sub):
            if principal.role is Role.KIOSK:
                await self._kiosk_connected(sid, principal.sub)
            else:
                await self._pharmacist_connected(sid, principal.sub)

    async def _kiosk_connected(self, sid: str, kiosk_id: str) -> None:
        await self._replace(self._kiosk_sid, kiosk_id, sid)
        call = await self._store.open_call_of(kiosk_id)
        if call is not None:
            self._seen_calls[call.call_id] = call
            if call.detached_at is not None or call.kiosk_node != self.node:
                await self._change_call(call.call_id, lambda c, _p: attach(c, self.node))

    async def _pharmacist_connected(self, sid: str, sub: str) -> None:
        await self._replace(self._pharmacist_sid, sub, sid)
        await self.channel.enter_room(sid, PHARMACISTS_ROOM)
        presence = await self._online(sub, await self._store.get_skills(sub))
        if presence is not None:
            await self._push_presence(presence)
        else:
            await self._push_presence(await self._presence(sub))

    async def _online(self, sub: str, skills: tuple[str, ...]) -> Presence | None:
        """The pharmacist's console is on this node: away if they were offline, else as is."""
        return await self._change_presence(
            sub, lambda p: come_online(p, sub, self.node, skills, self._clock()), create=True
        )

    async def disconnected(self, sid: str) -> None:
        """A socket went away: a kiosk's grace starts; a pharmacist goes offline at once."""
        socket = self._sockets.pop(sid, None)
        if socket is None:
            return
        for session_id in [s for s, owner in self._sessions.items() if owner == sid]:
            await self._close_session(session_id)
        async with self._subject_lock(socket.sub):
            if socket.role is Role.KIOSK:
                if self._kiosk_sid.get(socket.sub) != sid:
                    return
                del self._kiosk_sid[socket.sub]
                self._pushed.pop(socket.sub, None)
                call = await self._store.open_call_of(socket.sub)
                if call is not None:
                    await self._change_call(call.call_id, lambda c, _p: detach(c, self._clock()))
                return
            if self._pharmacist_sid.get(socket.sub) != sid:
                return
            del self._pharmacist_sid[socket.sub]
            self._seen_presence.pop(socket.sub, None)
            await self._pharmacist_gone(socket.sub, only_node=self.node)

    @contextlib.asynccontextmanager
    async def _subject_lock(self, sub: str) -> AsyncIterator[None]:
        """Serialize connects and disconnects of one kiosk or pharmacist on this node."""
        entry = self._subject_locks.setdefault(sub, _LockEntry())
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.users -= 1
            if entry.users == 0:
                del self._subject_locks[sub]

    async def _replace(self, table: dict[str, str], sub: str, sid: str) -> None:
        """A second connection of the same kiosk or pharmacist replaces the first."""
        old = table.get(sub)
        table[sub] = sid
        if old is not None and old != sid and old in self._sockets:
            del self._sockets[old]
            for session_id in [s for s, owner in self._sessions.items() if owner == old]:
                await self._close_session(session_id)
            await self.channel.emit("hotline.replaced", {"reason": "connected elsewhere"}, old)
            await self.channel.disconnect(old)

    # -- kiosk -----------------------------------------------------------------------------------

    async def place_call(self, principal: Principal, sid: str, order_token: str) -> CallView:
        """A kiosk calls about the order whose token it scanned; the call joins the queue."""
        self._require(principal, sid, Role.KIOSK)
        kiosk = await self._kiosks.require_enabled(principal.sub)
        grant = self._orders.verify_order(order_token)
        if self._stats is not None and self._stats.queue_length >= self._config.max_queue:
            raise Conflict("the hotline queue is full; try again later", code="hotline.queue_full")
        now = self._clock()
        call = Call(
            call_id=f"hc-{secrets.token_urlsafe(9)}",
            kiosk_id=kiosk.kiosk_id,
            order_id=grant.order_id,
            skills=tuple(sorted(set(kiosk.skills) | set(grant.skills))),
            state=CallState.QUEUED,
            version=1,
            enqueued_at=now,
            kiosk_node=self.node,
        )
        await self._apply(HotlineChange(calls=(call,)), {})
        self.kick()
        calls = await self._store.open_calls()
        view = self._kiosk_view(call, calls, await self._store.presences())
        self._pushed[kiosk.kiosk_id] = _Pushed(view.position, view.estimated_wait_seconds, now)
        return view

    async def current_call(self, principal: Principal, sid: str) -> CallView | None:
        """The kiosk's open call (after a reconnect), or None."""
        self._require(principal, sid, Role.KIOSK)
        call = await self._store.open_call_of(principal.sub)
        if call is None:
            return None
        calls = await self._store.open_calls()
        return self._kiosk_view(call, calls, await self._store.presences())

    async def take_callback(self, principal: Principal, sid: str) -> CallView:
        """The caller takes the callback offer: the call leaves the queue as a callback."""
        self._require(principal, sid, Role.KIOSK)
        call = await self._open_call_of_kiosk(principal.sub)
        wrap = self._config.wrap_up_seconds
        done = await self._change_call(
            call.call_id, lambda c, p: request_callback(c, p, self._clock(), wrap)
        )
        return call_view(done, as_kiosk=True)

    # -- pharmacist ------------------------------------------------------------------------------

    async def choose_presence(self, principal: Principal, sid: str, state: str) -> Presence:
        """A pharmacist becomes available (also: ends wrap-up early) or pauses (away)."""
        self._require(principal, sid, Role.PHARMACIST)
        target = PresenceState(state)

        def choose(presence: Presence | None) -> Presence | None:
            if presence is None:
                raise Conflict("not online", code="hotline.bad_transition")
            return set_presence(presence, target, self._clock())

        presence = await self._change_presence(principal.sub, choose)
        if presence is None:
            presence = await self._presence(principal.sub)
        if presence.state is PresenceState.AVAILABLE:
            self.kick()
        return presence

    async def accept(self, principal: Principal, sid: str, call_id: str) -> CallView:
        """The pharmacist answers the call offered to them; the call is connected."""
        self._require(principal, sid, Role.PHARMACIST)
        sessions = (f"hs-{secrets.token_urlsafe(12)}", f"hs-{secrets.token_urlsafe(12)}")
        call = await self._change_call(
            call_id,
            lambda c, p: accept(
                c,
                p,
                principal.sub,
                self._clock(),
                kiosk_session=sessions[0],
                pharmacist_session=sessions[1],
            ),
            sub=principal.sub,
        )
        return call_view(call, as_kiosk=False)

    async def decline(self, principal: Principal, sid: str, call_id: str) -> CallView:
        """The pharmacist turns the offer down: the call goes back to the head of the queue."""
        self._require(principal, sid, Role.PHARMACIST)

        def decline(call: Call, presence: Presence | None) -> HotlineChange | None:
            if call.state is not CallState.RINGING or call.pharmacist != principal.sub:
                raise Conflict("this call is not offered to you", code="hotline.not_offered")
            return requeue(call, presence, self._clock(), PresenceState.AVAILABLE)

        call = await self._change_call(call_id, decline, sub=principal.sub, label="declined")
        self.kick()
        return call_view(call, as_kiosk=False)

    # -- both ------------------------------------------------------------------------------------

    async def hang_up(self, principal: Principal, sid: str) -> CallView:
        """End the caller's call (abandon while waiting) or the pharmacist's current call."""
        if principal.role is Role.KIOSK:
            self._require(principal, sid, Role.KIOSK)
            call = await self._open_call_of_kiosk(principal.sub)
            reason = (
                EndReason.KIOSK_HANGUP
                if call.state is CallState.CONNECTED
                else EndReason.CALLER_CANCELLED
            )
            done = await self._end(call.call_id, reason)
            return call_view(done, as_kiosk=True)
        self._require(principal, sid, Role.PHARMACIST)
        call = await self._pharmacist_call(principal.sub)
        done = await self._end(call.call_id, EndReason.PHARMACIST_HANGUP)
        return call_view(done, as_kiosk=False)

    async def start_media(self, principal: Principal, sid: str) -> MediaOffer:
        """Open (or reopen) the caller's side of the connected call's video; the server offer."""
        if principal.role is Role.KIOSK:
            self._require(principal, sid, Role.KIOSK)
            call = await self._open_call_of_kiosk(principal.sub)
            session = call.kiosk_session
        else:
            self._require(principal, sid, Role.PHARMACIST)
            call = await self._pharmacist_call(principal.sub)
            session = call.pharmacist_session
        if call.state is not CallState.CONNECTED or session is None:
            raise Conflict("the call is not connected", code="hotline.not_connected")
        self._router.claim(session, self)
        self._sessions[session] = sid
        try:
            return await self._media.open_session(call.call_id, session, self._config.video_codec)
        except BaseException:
            self._sessions.pop(session, None)
            self._router.release(session)
            raise

    async def answer_media(self, principal: Principal, sid: str, sdp: str) -> None:
        """The client's answer to the server's latest offer."""
        session = next((s for s, owner in self._sessions.items() if owner == sid), None)
        if session is None:
            raise Conflict("start media first", code="hotline.not_connected")
        await self._media.accept_answer(session, sdp)

    # -- REST ------------------------------------------------------------------------------------

    async def kiosk_disabled(self, kiosk_id: str) -> Call | None:
        """A kiosk was disabled: its open call ends and its socket on this node is closed."""
        ended: Call | None = None
        call = await self._store.open_call_of(kiosk_id)
        if call is not None:
            ended = await self._end(call.call_id, EndReason.KIOSK_DISABLED)
        sid = self._kiosk_sid.get(kiosk_id)
        if sid is not None:
            await self.channel.emit(
                "hotline.disabled", {"code": "hotline.kiosk_disabled", "message": "disabled"}, sid
            )
            await self.channel.disconnect(sid)
        return ended

    async def set_skills(self, principal: Principal, sub: str, skills: Sequence[str]) -> None:
        """An admin sets a pharmacist's skills (also on their live presence)."""
        if principal.role is not Role.ADMIN:
            raise Forbidden("only admins set skills", code="hotline.forbidden")
        cleaned = tuple(sorted(set(skills)))
        await self._store.set_skills(sub, cleaned)

        def update(presence: Presence | None) -> Presence | None:
            if presence is None or presence.skills == cleaned:
                return None
            return dataclasses.replace(presence, skills=cleaned, version=presence.version + 1)

        await self._change_presence(sub, update)

    async def stats(self, principal: Principal | None = None) -> HotlineStats:
        """Service-level figures now (admins and pharmacists)."""
        if principal is not None and principal.role not in (Role.ADMIN, Role.PHARMACIST):
            raise Forbidden("only admins and pharmacists see hotline figures")
        return await self._refresh_stats(force=True)

    async def call_record(self, principal: Principal, call_id: str) -> Call:
        """The record of one call, for admins."""
        if principal.role is not Role.ADMIN:
            raise Forbidden("only admins read call records", code="hotline.forbidden")
        call = await self._store.get_call(call_id)
        if call is None:
            raise NotFound("no such call", code="hotline.call_not_found")
        return call

    async def recent_calls(self, principal: Principal, since: float, limit: int) -> list[Call]:
        """Records of calls placed since `since`, oldest first, for admins."""
        if principal.role is not Role.ADMIN:
            raise Forbidden("only admins read call records", code="hotline.forbidden")
        return list(await self._store.recent_calls(since, limit))

    # -- the background work -------------------------------------------------------------------

    async def tick(self) -> None:
        """One round: timers, routing, catching up with other nodes, positions and figures."""
        await self.sweep()
        await self.dispatch()
        await self._push_positions()

    async def sweep(self) -> None:
        """Apply everything the timers say is due now."""
        now = self._clock()
        alive: set[str] = {self.node}
        if not self._single_node:
            if now >= self._heartbeat_at:
                await self._store.heartbeat(self.node, now + self._config.node_lease_seconds)
                self._heartbeat_at = now + self._config.node_lease_seconds / 3
            alive |= await self._store.live_nodes(now)
        calls = await self._store.open_calls()
        presences = await self._store.presences()
        for item in due(calls, presences, alive, now, self._rules):
            try:
                await self._handle(item, now)
            except SignalingError as exc:
                log.info("hotline %s not applied: %s", item.kind.value, exc.code)
        await self._catch_up(calls, presences)

    async def dispatch(self) -> None:
        """Offer queued calls to this node's available pharmacists (longest idle first)."""
        async with self._dispatching:
            if not self._pharmacist_sid:
                return
            presences = await self._store.presences()
            mine = [
                p
                for p in presences
                if p.node == self.node
                and p.state is PresenceState.AVAILABLE
                and p.sub in self._pharmacist_sid
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
                self.kick()  # someone else moved first; route again with fresh records

    async def _offer(self, call: Call, pharmacist: Presence, now: float) -> bool:
        """Ring one pharmacist for one call; False if another request or node moved first."""
        try:
            change = offer(call, pharmacist, now, self._config.ring_timeout_seconds)
            await self._apply(change, {call.call_id: call})
        except Conflict as exc:
            if exc.code in ("hotline.stale", "hotline.bad_transition"):
                return False
            raise
        return True

    async def _handle(self, item: Due, now: float) -> None:
        wrap = self._config.wrap_up_seconds
        if item.kind is DueKind.PHARMACIST_LOST and item.sub is not None:
            await self._pharmacist_gone(item.sub, only_node=None)
        elif item.kind is DueKind.WRAP_UP_OVER and item.sub is not None:

            def ready(presence: Presence | None) -> Presence | None:
                if presence is None or presence.state is not PresenceState.WRAP_UP:
                    return None
                if presence.wrap_until is None or presence.wrap_until > self._clock():
                    return None
                return move_presence(presence, PresenceState.AVAILABLE, self._clock())

            if await self._change_presence(item.sub, ready) is not None:
                self.kick()
        elif item.kind is DueKind.STRANDED and item.sub is not None:
            await self._free_stranded(item.sub)
        elif item.call_id is not None:
            call_id = item.call_id
            if item.kind is DueKind.RING_TIMEOUT:

                def timed_out(call: Call, presence: Presence | None) -> HotlineChange | None:
                    if call.ring_deadline is None or call.ring_deadline > self._clock():
                        return None
                    return requeue(
                        call, presence, self._clock(), PresenceState.AWAY, reason="ring_timeout"
                    )

                await self._change_call(call_id, timed_out, label="ring_timeout")
                self.kick()
            elif item.kind is DueKind.KIOSK_LOST:
                await self._change_call(call_id, lambda c, _p: detach(c, now))
            elif item.kind is DueKind.KIOSK_GONE:

                def gone(call: Call, presence: Presence | None) -> HotlineChange | None:
                    grace = self._config.reconnect_grace_seconds
                    if call.detached_at is None or call.detached_at + grace > self._clock():
                        return None
                    return end(call, presence, self._clock(), EndReason.KIOSK_DISCONNECTED, wrap)

                await self._change_call(call_id, gone)
            elif item.kind is DueKind.ORPHANED:

                def orphaned(call: Call, presence: Presence | None) -> HotlineChange | None:
                    if (
                        presence is not None
                        and presence.call_id == call.call_id
                        and (presence.state in (PresenceState.RINGING, PresenceState.BUSY))
                    ):
                        return None
                    if call.state is CallState.RINGING:
                        return requeue(call, None, self._clock(), PresenceState.AVAILABLE)
                    return end(call, None, self._clock(), EndReason.PHARMACIST_DISCONNECTED, wrap)

                await self._change_call(call_id, orphaned, label="pharmacist_disconnected")
                self.kick()
            elif item.kind is DueKind.CALLBACK_OFFER:
                await self._change_call(call_id, lambda c, _p: offer_callback(c, now))

    async def _free_stranded(self, sub: str) -> None:
        """A pharmacist ringing or busy for a call that moved on: available or in wrap-up."""
        presence = await self._store.get_presence(sub)
        if presence is None or presence.call_id is None:
            return
        call = await self._store.get_call(presence.call_id)
        wrap = self._config.wrap_up_seconds

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
            await self._change_presence(sub, free)
            self.kick()

    async def _pharmacist_gone(self, sub: str, only_node: str | None) -> None:
        """A pharmacist's console is gone: free their call (re-queue or end it), then offline."""
        presence = await self._store.get_presence(sub)
        if presence is None or presence.state is PresenceState.OFFLINE:
            return
        if only_node is not None and presence.node != only_node:
            return  # they are connected on another node now
        wrap = self._config.wrap_up_seconds
        if presence.call_id is not None and presence.state is PresenceState.RINGING:
            await self._change_call(
                presence.call_id,
                lambda c, p: requeue(c, p, self._clock(), PresenceState.OFFLINE),
                sub=sub,
                label="pharmacist_disconnected",
            )
            self.kick()
        elif presence.call_id is not None and presence.state is PresenceState.BUSY:
            await self._change_call(
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

        await self._change_presence(sub, offline)

    # -- changes ---------------------------------------------------------------------------------

    async def _change_call(
        self,
        call_id: str,
        make: Callable[[Call, Presence | None], HotlineChange | None],
        *,
        sub: str | None = None,
        label: str | None = None,
    ) -> Call:
        """Read, move and store one call (and its pharmacist's presence), retrying on stale."""
        for _ in range(_TRIES):
            call = await self._store.get_call(call_id)
            if call is None:
                raise NotFound("no such call", code="hotline.call_not_found")
            who = sub or call.pharmacist
            presence = await self._store.get_presence(who) if who is not None else None
            change = make(call, presence)
            if not change:
                return call
            try:
                await self._apply(change, {call.call_id: call}, label)
            except Conflict as exc:
                if exc.code == "hotline.stale":
                    continue
                raise
            return next((c for c in change.calls if c.call_id == call_id), call)
        raise Conflict("the call kept changing; try again", code="hotline.stale")

    async def _change_presence(
        self,
        sub: str,
        make: Callable[[Presence | None], Presence | None],
        *,
        create: bool = False,
    ) -> Presence | None:
        """Read, move and store one presence, retrying on stale; None if nothing changed."""
        for _ in range(_TRIES):
            presence = await self._store.get_presence(sub)
            if presence is None and not create:
                return None
            changed = make(presence)
            if changed is None:
                return None
            try:
                await self._apply(HotlineChange(presences=(changed,)), {})
            except Conflict as exc:
                if exc.code == "hotline.stale":
                    continue
                raise
            return changed
        raise Conflict("the presence kept changing; try again", code="hotline.stale")

    async def _apply(
        self, change: HotlineChange, before: Mapping[str, Call], label: str | None = None
    ) -> None:
        """Store a change, then record, count and push what it did."""
        await self._store.apply(change)
        now = self._clock()
        for call in change.calls:
            old = before.get(call.call_id)
            await self._record_call(old, call, now, label)
            await self._notify_call(old, call, label)
        for presence in change.presences:
            if presence.sub in self._pharmacist_sid:
                self._seen_presence[presence.sub] = presence.version
                await self._push_presence(presence)

    async def _record_call(
        self, old: Call | None, new: Call, now: float, label: str | None
    ) -> None:
        """Audit and count the steps a stored change of a call made."""
        if old is not None and old.state is not new.state:
            if new.state is CallState.RINGING and new.offers == 1:
                self._observer.dispatched(now - new.enqueued_at)
            elif new.state is CallState.CONNECTED:
                self._observer.answered(now - new.enqueued_at)
        for step in call_steps(old, new, label):
            if step.metric is not None:
                self._observer.call_event(step.metric)
            await self._audit.record(new.call_id, new.kiosk_id, step.action, step.detail, now)

    async def _notify_call(self, old: Call | None, new: Call, label: str | None = None) -> None:
        """Push a call's change to its kiosk and pharmacists on this node; end its media."""
        concerns = new.kiosk_id in self._kiosk_sid or any(
            p is not None and p in self._pharmacist_sid
            for p in (new.pharmacist, None if old is None else old.pharmacist)
        )
        if concerns and new.is_open:
            self._seen_calls[new.call_id] = new
        else:
            self._seen_calls.pop(new.call_id, None)
        if not new.is_open:
            for session in (new.kiosk_session, new.pharmacist_session):
                if session is not None and session in self._sessions:
                    await self._close_session(session)
        kiosk_sid = self._kiosk_sid.get(new.kiosk_id)
        if kiosk_sid is not None and new.kiosk_node == self.node:
            changed_state = old is None or old.state is not new.state
            if changed_state and old is not None:
                await self.channel.emit("hotline.call", call_view(new, as_kiosk=True), kiosk_sid)
            if (
                old is not None
                and old.callback_offered_at is None
                and new.callback_offered_at is not None
            ):
                payload = {
                    "call_id": new.call_id,
                    "waited_seconds": round(new.callback_offered_at - new.enqueued_at, 3),
                }
                await self.channel.emit("hotline.callback_offer", payload, kiosk_sid)
        previous = None if old is None else old.pharmacist
        if (
            old is not None
            and old.state is CallState.RINGING
            and new.state is not CallState.CONNECTED
            and previous is not None
            and (new.state is not CallState.RINGING or new.pharmacist != previous)
        ):
            sid = self._pharmacist_sid.get(previous)
            if sid is not None:
                reason = new.state.value
                if new.state is CallState.QUEUED:
                    reason = label or "requeued"
                await self.channel.emit(
                    "hotline.offer_withdrawn", {"call_id": new.call_id, "reason": reason}, sid
                )
        if new.pharmacist is None:
            return
        sid = self._pharmacist_sid.get(new.pharmacist)
        if sid is None or (old is not None and old.state is new.state):
            return
        if new.state is CallState.RINGING:
            await self.channel.emit("hotline.offer", call_view(new, as_kiosk=False), sid)
        elif new.state is not CallState.QUEUED:
            await self.channel.emit("hotline.call", call_view(new, as_kiosk=False), sid)

    async def _catch_up(self, calls: Sequence[Call], presences: Sequence[Presence]) -> None:
        """Push changes other nodes made to calls and presences of this node's sockets.

        Also heals what another node decided while this one looked gone (a late heartbeat): a
        kiosk connected here is attached to its call again, a pharmacist connected here who
        was set offline comes back online (away).
        """
        by_id = {c.call_id: c for c in calls}
        for call in calls:
            if call.kiosk_id in self._kiosk_sid and (
                call.detached_at is not None or call.kiosk_node != self.node
            ):
                with contextlib.suppress(Conflict, NotFound):
                    await self._change_call(call.call_id, lambda c, _p: attach(c, self.node))
        for presence in presences:
            if presence.sub in self._pharmacist_sid and presence.state is PresenceState.OFFLINE:
                await self._online(presence.sub, presence.skills)
        for call in calls:
            if call.kiosk_id in self._kiosk_sid or call.pharmacist in self._pharmacist_sid:
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
            known = self._seen_presence.get(presence.sub, 0)
            if presence.sub in self._pharmacist_sid and known < presence.version:
                self._seen_presence[presence.sub] = presence.version
                await self._push_presence(presence)

    async def _push_presence(self, presence: Presence) -> None:
        sid = self._pharmacist_sid.get(presence.sub)
        if sid is not None:
            await self.channel.emit("hotline.presence", presence_view(presence), sid)

    async def _push_positions(self) -> None:
        """Tell each waiting kiosk on this node its position and estimated wait (throttled)."""
        stats = await self._refresh_stats()
        if not self._kiosk_sid:
            return
        calls = await self._store.open_calls()
        presences = await self._store.presences()
        handle = stats.average_handle_seconds or self._config.default_handle_seconds
        count = staffed(presences)
        now = self._clock()
        every = self._config.position_update_seconds
        for position, call in enumerate(queue_order(calls), start=1):
            sid = self._kiosk_sid.get(call.kiosk_id)
            if sid is None or call.kiosk_node != self.node:
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
            await self.channel.emit("hotline.position", view, sid)
        if self._pharmacist_sid and now - self._queue_pushed_at >= every:
            self._queue_pushed_at = now
            queued = [c for c in calls if c.state is CallState.QUEUED]
            summary = {
                "queue_length": len(queued),
                "longest_wait_seconds": round(
                    max((now - c.enqueued_at for c in queued), default=0.0), 3
                ),
            }
            await self.channel.emit("hotline.queue", summary, PHARMACISTS_ROOM)

    async def _refresh_stats(self, force: bool = False) -> HotlineStats:
        now = self._clock()
        if (
            self._stats is not None
            and not force
            and now - self._stats_at < self._config.position_update_seconds
        ):
            return self._stats
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
        self._stats, self._stats_at = stats, now
        self._observer.snapshot(stats)
        return stats

    # -- media events (MediaListener) ------------------------------------------------------------

    def media_offer(self, session_id: str, offer: MediaOffer) -> None:
        """Deliver a renegotiation offer to the session's socket."""
        sid = self._sessions.get(session_id)
        if sid is not None:
            self._spawn(self.channel.emit("media.offer", offer_payload(offer), sid))

    def media_tracks(self, session_id: str, tracks: tuple[TrackInfo, ...]) -> None:
        """Tell the socket which publisher each of its m-lines now carries."""
        sid = self._sessions.get(session_id)
        if sid is not None:
            payload = {"tracks": [dataclasses.asdict(t) for t in tracks]}
            self._spawn(self.channel.emit("media.tracks", payload, sid))

    def media_state(self, session_id: str, state: str) -> None:
        """Pass the peer connection state to the session's socket."""
        sid = self._sessions.get(session_id)
        if sid is not None:
            self._spawn(self.channel.emit("media.state", {"state": state}, sid))

    # -- internals -------------------------------------------------------------------------------

    def _require(self, principal: Principal, sid: str, role: Role) -> None:
        if principal.role is not role:
            raise Forbidden(f"only a {role.value} may do this", code="hotline.forbidden")
        if sid not in self._sockets:
            raise Conflict("the socket is not connected", code="hotline.not_connected")

    async def _open_call_of_kiosk(self, kiosk_id: str) -> Call:
        call = await self._store.open_call_of(kiosk_id)
        if call is None:
            raise NotFound("this kiosk has no open call", code="hotline.no_call")
        return call

    async def _pharmacist_call(self, sub: str) -> Call:
        presence = await self._presence(sub)
        call = None if presence.call_id is None else await self._store.get_call(presence.call_id)
        if (
            call is None
            or presence.state is not PresenceState.BUSY
            or call.state is not CallState.CONNECTED
            or call.pharmacist != sub
        ):
            raise NotFound("you are not on a call", code="hotline.no_call")
        return call

    async def _presence(self, sub: str) -> Presence:
        presence = await self._store.get_presence(sub)
        if presence is None:
            raise NotFound("not online", code="hotline.no_call")
        return presence

    async def _end(self, call_id: str, reason: EndReason) -> Call:
        wrap = self._config.wrap_up_seconds
        return await self._change_call(call_id, lambda c, p: end(c, p, self._clock(), reason, wrap))

    def _kiosk_view(
        self, call: Call, calls: Sequence[Call], presences: Sequence[Presence]
    ) -> CallView:
        position = next(
            (i for i, c in enumerate(queue_order(calls), start=1) if c.call_id == call.call_id),
            None,
        )
        estimate = None
        if position is not None:
            handle = self._config.default_handle_seconds
            if self._stats is not None and self._stats.average_handle_seconds is not None:
                handle = self._stats.average_handle_seconds
            estimate = estimate_wait(position, staffed(presences), handle)
        current = next((c for c in calls if c.call_id == call.call_id), call)
        return call_view(current, as_kiosk=True, position=position, estimated_wait=estimate)

    def ice_servers(self, sub: str) -> list[IceServerInfo]:
        """ICE servers for a kiosk or pharmacist's peer connection."""
        return list(self._ice_servers(sub))

    async def _close_session(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)
        self._router.release(session_id)
        await self._media.close_session(session_id)

    def _spawn(self, work: Awaitable[None]) -> None:
        if self._closed:
            if asyncio.iscoroutine(work):
                work.close()
            return
        task = asyncio.get_running_loop().create_task(self._guard(work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guard(self, work: Awaitable[None]) -> None:
        try:
            await work
        except SignalingError as exc:
            log.warning("hotline background work failed: %s", exc.code)
        except ConnectionError:
            log.info("hotline background work lost its connection")


def offer_payload(offer: MediaOffer) -> dict[str, Any]:
    """A media offer as sent to clients (the same shape as on /visit)."""
    return {
        "sdp": offer.sdp,
        "tracks": [dataclasses.asdict(t) for t in offer.tracks],
        "publish": dict(offer.publish),
    }
