"""The pharmacist hotline as a service: kiosks' calls, pharmacists' presence, REST, lifecycle.

The HotlineStore is the truth (calls, presence, kiosks); every change is an atomic move
(hotline_moves) stored with compare-and-set (hotline_changes), so several nodes sharing one store
never give a call to two pharmacists. This node keeps only its live sockets (hotline_local), its
open media sessions (hotline_media) and what it last pushed to them (hotline_pushes). One
background task per node sweeps the timers kept in the records (hotline_sweeper), runs routing
rounds (hotline_dispatch), pushes queue positions and refreshes the figures.

With several nodes (a HotlineCluster), routing is global and atomic in the store, and changes
to sockets held by other nodes are announced to them (hotline_cluster). A call's media lives on
its kiosk's node: a pharmacist whose console is on another node is sent there
(`hotline.wrong_node`) and opens a media-only socket there, which serves only `media.*` events
and never replaces their console's socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Sequence

from careline.signaling.audit_writer import AuditWriter
from careline.signaling.errors import (
    Conflict,
    Forbidden,
    NotFound,
    SignalingError,
    StoreUnavailable,
    WrongNode,
)
from careline.signaling.hotline_call import Call, CallState, EndReason
from careline.signaling.hotline_changes import HotlineChanges
from careline.signaling.hotline_cluster import HotlineCluster, NodeNotice
from careline.signaling.hotline_config import PHARMACISTS_ROOM, HotlineChannel, HotlineConfig
from careline.signaling.hotline_dispatch import HotlineDispatch
from careline.signaling.hotline_local import LocalSocket, LocalSockets
from careline.signaling.hotline_media import HotlineMedia
from careline.signaling.hotline_moves import accept, attach, detach, end, request_callback, requeue
from careline.signaling.hotline_observer import HotlineObserver, NullHotlineObserver
from careline.signaling.hotline_pharmacists import HotlinePharmacists
from careline.signaling.hotline_pushes import HotlinePushes
from careline.signaling.hotline_schemas import CallView
from careline.signaling.hotline_stats import HotlineStats
from careline.signaling.hotline_store import HotlineChange, HotlineStore
from careline.signaling.hotline_sweeper import HotlineSweeper
from careline.signaling.hotline_views import call_view
from careline.signaling.identity import OrderVerifier, Principal, Role
from careline.signaling.kiosk_registry import KioskRegistry
from careline.signaling.media_gateway import MediaGateway, MediaOffer
from careline.signaling.media_router import MediaRouter
from careline.signaling.node_registry import NodeRegistry
from careline.signaling.outage_log import OutageLog
from careline.signaling.presence import Presence, PresenceState
from careline.signaling.schemas import IceServerInfo
from careline.signaling.stores import AuditStore

__all__ = ["PHARMACISTS_ROOM", "HotlineChannel", "HotlineConfig", "HotlineService"]

log = logging.getLogger(__name__)

#: Notices from other nodes kept until the next round; beyond it they wait for the sweep.
MAX_PENDING_NOTICES = 1024


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
        cluster: HotlineCluster | None = None,
        node_id: str | None = None,
    ) -> None:
        self._store = store
        self._audit = AuditWriter(audit)
        self._kiosks = kiosks
        self._orders = orders
        self._config = config
        self._ice_servers = ice_servers
        self._clock = clock
        self.node = node_id or f"n-{secrets.token_urlsafe(6)}"
        observer_ = observer or NullHotlineObserver()
        self._channel: HotlineChannel | None = None
        self._local = LocalSockets()
        self._media = HotlineMedia(media, router, lambda: self.channel, config.video_codec)
        self._changes = HotlineChanges(store, self._audit, observer_, clock)
        self._pushes = HotlinePushes(
            store,
            self._local,
            self._media,
            lambda: self.channel,
            config,
            clock,
            observer_,
            self.node,
            bus=None if cluster is None else cluster.bus,
        )
        self._changes.listen(self._pushes)
        self._pharmacists = HotlinePharmacists(
            store, self._changes, self.node, config.wrap_up_seconds, clock, self.kick
        )
        self._sweeper = HotlineSweeper(
            store,
            self._changes,
            self._pharmacists,
            self._pushes,
            self._local,
            config,
            clock,
            self.node,
            single_node=cluster is None,
            kick=self.kick,
        )
        self._dispatch = HotlineDispatch(
            store,
            self._changes,
            self._local,
            config,
            clock,
            self.node,
            shared=None if cluster is None else cluster.dispatch,
            kick=self.kick,
        )
        self._nodes = None if cluster is None else cluster.nodes
        #: media-only sockets here (a side whose console or kiosk socket is on another node)
        self._media_sockets: dict[str, LocalSocket] = {}
        self._notices: set[NodeNotice] = set()
        self._kick = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
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
        self._kick.set()  # the loop also ends on its own should a cancellation be swallowed
        task, self._loop_task = self._loop_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._media.close()
        await self._audit.close()

    async def _run(self) -> None:
        """Sweep every `sweep_seconds`; dispatch at once when kicked (new call, free pharmacist,
        a notice from another node)."""
        loop = asyncio.get_running_loop()
        next_sweep = loop.time()
        outage = OutageLog(log, "hotline sweep")
        while True:
            timeout = max(0.0, next_sweep - loop.time())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._kick.wait()
            self._kick.clear()
            if self._closed:
                return
            try:
                notices, self._notices = self._notices, set()
                if notices:
                    await self._pushes.catch_up_notices(notices)
                if loop.time() >= next_sweep:
                    next_sweep = loop.time() + self._config.sweep_seconds
                    await self.tick()
                else:
                    await self.dispatch()
            except StoreUnavailable as exc:
                outage.failed(exc.code)
                self._sweeper.store_lost()
            except SignalingError as exc:
                log.warning("hotline sweep failed: %s", exc.code)
            except ConnectionError:
                log.info("hotline sweep lost a connection")
            except Exception:
                log.exception("hotline sweep failed")
            else:
                outage.ok()

    def kick(self) -> None:
        """Ask the background task to route calls now."""
        self._kick.set()

    def notice(self, notice: NodeNotice) -> None:
        """Another node changed a call or presence of a socket here: push it soon.

        Called by the node bus on the event loop. At most MAX_PENDING_NOTICES wait; beyond
        that they are dropped, and the next sweep catches up from the store.
        """
        if len(self._notices) < MAX_PENDING_NOTICES:
            self._notices.add(notice)
        self.kick()

    # -- connections -----------------------------------------------------------------------------

    async def admit(self, principal: Principal) -> None:
        """May this principal connect to /hotline? Kiosks must be registered and enabled."""
        if principal.role is Role.KIOSK:
            await self._kiosks.require_enabled(principal.sub)
        elif principal.role is not Role.PHARMACIST:
            raise Forbidden("only kiosks and pharmacists use the hotline", code="hotline.forbidden")

    async def connected(self, sid: str, principal: Principal) -> None:
        """A kiosk or pharmacist socket connected (after `admit`)."""
        self._local.sockets[sid] = LocalSocket(sid=sid, role=principal.role, sub=principal.sub)
        async with self._local.locks.hold(principal.sub):
            if principal.role is Role.KIOSK:
                await self._kiosk_connected(sid, principal.sub)
            else:
                await self._pharmacist_connected(sid, principal.sub)

    async def _kiosk_connected(self, sid: str, kiosk_id: str) -> None:
        await self._replace(self._local.kiosks, kiosk_id, sid)
        call = await self._store.open_call_of(kiosk_id)
        if call is not None:
            self._pushes.seen(call)
            if call.detached_at is not None or call.kiosk_node != self.node:
                await self._changes.change_call(call.call_id, lambda c, _p: attach(c, self.node))

    async def _pharmacist_connected(self, sid: str, sub: str) -> None:
        await self._replace(self._local.pharmacists, sub, sid)
        await self.channel.enter_room(sid, PHARMACISTS_ROOM)
        presence = await self._pharmacists.online(sub, await self._store.get_skills(sub))
        if presence is not None:
            await self._pushes.push_presence(presence)
        else:
            await self._pushes.push_presence(await self._pharmacists.get(sub))

    def media_connected(self, sid: str, principal: Principal) -> None:
        """A media-only socket connected (after `admit`): it may only do `media.*` events (the
        others answer `hotline.not_connected`), for calls whose media lives here; it changes no
        presence and replaces no socket."""
        self._media_sockets[sid] = LocalSocket(sid=sid, role=principal.role, sub=principal.sub)

    async def disconnected(self, sid: str) -> None:
        """A socket went away: a kiosk's grace starts; a pharmacist goes offline at once.

        A media-only socket only closes the session it opened (the call goes on)."""
        if self._media_sockets.pop(sid, None) is not None:
            await self._media.close_owned_by(sid)
            return
        socket = self._local.sockets.pop(sid, None)
        if socket is None:
            return
        await self._media.close_owned_by(sid)
        async with self._local.locks.hold(socket.sub):
            if socket.role is Role.KIOSK:
                if self._local.kiosks.get(socket.sub) != sid:
                    return
                del self._local.kiosks[socket.sub]
                self._pushes.forget_kiosk(socket.sub)
                call = await self._store.open_call_of(socket.sub)
                if call is not None:
                    await self._changes.change_call(
                        call.call_id, lambda c, _p: detach(c, self._clock())
                    )
                return
            if self._local.pharmacists.get(socket.sub) != sid:
                return
            del self._local.pharmacists[socket.sub]
            self._pushes.forget_pharmacist(socket.sub)
            await self._pharmacists.gone(socket.sub, only_node=self.node)

    async def _replace(self, table: dict[str, str], sub: str, sid: str) -> None:
        """A second connection of the same kiosk or pharmacist replaces the first."""
        old = table.get(sub)
        table[sub] = sid
        if old is not None and old != sid and old in self._local.sockets:
            del self._local.sockets[old]
            await self._media.close_owned_by(old)
            await self.channel.emit("hotline.replaced", {"reason": "connected elsewhere"}, old)
            await self.channel.disconnect(old)

    # -- kiosk -----------------------------------------------------------------------------------

    async def place_call(self, principal: Principal, sid: str, order_token: str) -> CallView:
        """A kiosk calls about the order whose token it scanned; the call joins the queue."""
        self._require(principal, sid, Role.KIOSK)
        kiosk = await self._kiosks.require_enabled(principal.sub)
        grant = self._orders.verify_order(order_token)
        stats = self._pushes.stats
        if stats is not None and stats.queue_length >= self._config.max_queue:
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
        await self._changes.apply(HotlineChange(calls=(call,)), {})
        self.kick()
        calls = await self._store.open_calls()
        view = self._pushes.kiosk_view(call, calls, await self._store.presences())
        self._pushes.pushed_position(kiosk.kiosk_id, view, now)
        return view

    async def current_call(self, principal: Principal, sid: str) -> CallView | None:
        """The kiosk's open call (after a reconnect), or None."""
        self._require(principal, sid, Role.KIOSK)
        call = await self._store.open_call_of(principal.sub)
        if call is None:
            return None
        calls = await self._store.open_calls()
        return self._pushes.kiosk_view(call, calls, await self._store.presences())

    async def take_callback(self, principal: Principal, sid: str) -> CallView:
        """The caller takes the callback offer: the call leaves the queue as a callback."""
        self._require(principal, sid, Role.KIOSK)
        call = await self._open_call_of_kiosk(principal.sub)
        wrap = self._config.wrap_up_seconds
        done = await self._changes.change_call(
            call.call_id, lambda c, p: request_callback(c, p, self._clock(), wrap)
        )
        return call_view(done, as_kiosk=True)

    # -- pharmacist ------------------------------------------------------------------------------

    async def choose_presence(self, principal: Principal, sid: str, state: str) -> Presence:
        """A pharmacist becomes available (also: ends wrap-up early) or pauses (away)."""
        self._require(principal, sid, Role.PHARMACIST)
        return await self._pharmacists.choose(principal.sub, PresenceState(state))

    async def accept(self, principal: Principal, sid: str, call_id: str) -> CallView:
        """The pharmacist answers the call offered to them; the call is connected."""
        self._require(principal, sid, Role.PHARMACIST)
        sessions = (f"hs-{secrets.token_urlsafe(12)}", f"hs-{secrets.token_urlsafe(12)}")
        call = await self._changes.change_call(
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

        call = await self._changes.change_call(
            call_id, decline, sub=principal.sub, label="declined"
        )
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
        """Open (or reopen) the caller's side of the connected call's video; the server offer.

        The call's media lives on its kiosk's node; elsewhere this answers `hotline.wrong_node`
        with that node's URL (several nodes)."""
        self._require_media(principal, sid)
        if principal.role is Role.KIOSK:
            call = await self._open_call_of_kiosk(principal.sub)
            session = call.kiosk_session
        else:
            call = await self._pharmacist_call(principal.sub)
            session = call.pharmacist_session
        if call.state is not CallState.CONNECTED or session is None:
            raise Conflict("the call is not connected", code="hotline.not_connected")
        if self._nodes is not None and call.kiosk_node != self.node:
            await self._media.close_owned_by(sid)  # from before the kiosk moved away
            raise WrongNode(
                "this call's media is served by another node",
                node_url=await self._node_url(self._nodes, call.kiosk_node),
                code="hotline.wrong_node",
            )
        return await self._media.open(call.call_id, session, sid)

    async def _node_url(self, nodes: NodeRegistry, node: str) -> str:
        """Where clients reach the live node `node` (`hotline.node_unavailable` if none)."""
        live = await nodes.live(self._clock())
        url = next((n.url for n in live if n.node_id == node), None)
        if url is None:
            raise Conflict(
                "the node holding this call's media is not reachable; try again",
                code="hotline.node_unavailable",
            )
        return url

    async def answer_media(self, principal: Principal, sid: str, sdp: str) -> None:
        """The client's answer to the server's latest offer."""
        self._require_media(principal, sid)
        await self._media.answer(sid, sdp)

    # -- REST ------------------------------------------------------------------------------------

    async def kiosk_disabled(self, kiosk_id: str) -> Call | None:
        """A kiosk was disabled: its open call ends and its socket on this node is closed."""
        ended: Call | None = None
        call = await self._store.open_call_of(kiosk_id)
        if call is not None:
            ended = await self._end(call.call_id, EndReason.KIOSK_DISABLED)
        sid = self._local.kiosks.get(kiosk_id)
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
        await self._pharmacists.set_skills(sub, cleaned)

    async def stats(self, principal: Principal | None = None) -> HotlineStats:
        """Service-level figures now (admins and pharmacists; a pharmacist's carry `mine`)."""
        if principal is not None and principal.role not in (Role.ADMIN, Role.PHARMACIST):
            raise Forbidden("only admins and pharmacists see hotline figures")
        pharmacist = principal is not None and principal.role is Role.PHARMACIST
        sub = principal.sub if pharmacist and principal is not None else None
        return await self._pushes.refresh_stats(force=True, sub=sub)

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
        await self._pushes.push_positions()

    async def sweep(self) -> None:
        """Apply everything the timers say is due now."""
        await self._sweeper.sweep()

    async def dispatch(self) -> None:
        """Offer queued calls to available pharmacists (longest idle first)."""
        await self._dispatch.dispatch()

    # -- internals -------------------------------------------------------------------------------

    def ice_servers(self, sub: str) -> list[IceServerInfo]:
        """ICE servers for a kiosk or pharmacist's peer connection."""
        return list(self._ice_servers(sub))

    def _require(self, principal: Principal, sid: str, role: Role) -> None:
        if principal.role is not role:
            raise Forbidden(f"only a {role.value} may do this", code="hotline.forbidden")
        if sid not in self._local.sockets:
            raise Conflict("the socket is not connected", code="hotline.not_connected")

    def _require_media(self, principal: Principal, sid: str) -> None:
        """A kiosk's or pharmacist's connected socket, media-only sockets included."""
        if principal.role not in (Role.KIOSK, Role.PHARMACIST):
            raise Forbidden("only kiosks and pharmacists use the hotline", code="hotline.forbidden")
        if sid not in self._local.sockets and sid not in self._media_sockets:
            raise Conflict("the socket is not connected", code="hotline.not_connected")

    async def _open_call_of_kiosk(self, kiosk_id: str) -> Call:
        call = await self._store.open_call_of(kiosk_id)
        if call is None:
            raise NotFound("this kiosk has no open call", code="hotline.no_call")
        return call

    async def _pharmacist_call(self, sub: str) -> Call:
        presence = await self._pharmacists.get(sub)
        call = None if presence.call_id is None else await self._store.get_call(presence.call_id)
        if (
            call is None
            or presence.state is not PresenceState.BUSY
            or call.state is not CallState.CONNECTED
            or call.pharmacist != sub
        ):
            raise NotFound("you are not on a call", code="hotline.no_call")
        return call

    async def _end(self, call_id: str, reason: EndReason) -> Call:
        wrap = self._config.wrap_up_seconds
        return await self._changes.change_call(
            call_id, lambda c, p: end(c, p, self._clock(), reason, wrap)
        )
