"""Video visits as a service: create, join, waiting room, admit/deny/remove/end, media, reconnects.

The durable truth (visit and participant states, audit trail) lives in the VisitStore; this node
keeps only its live connections (socket id per participant) and grace timers. Changes to one
visit are serialized by a per-visit lock on this node and by the store's version check across
nodes. Media goes through the MediaGateway; clients are reached through a VisitChannel.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from careline.signaling.background_work import BackgroundWork
from careline.signaling.errors import (
    Conflict,
    Forbidden,
    InvalidPayload,
    NotFound,
    SignalingError,
    StoreUnavailable,
    WrongNode,
)
from careline.signaling.identity import Principal, Role, subject_revocation_key
from careline.signaling.keyed_locks import KeyedLocks
from careline.signaling.media_gateway import (
    MediaGateway,
    MediaOffer,
    MediaStats,
    TrackInfo,
)
from careline.signaling.media_payloads import offer_payload, tracks_payload
from careline.signaling.schemas import IceServerInfo
from careline.signaling.stores import AuditStore, RevocationStore
from careline.signaling.visit import (
    Participant,
    ParticipantKind,
    ParticipantState,
    Visit,
    VisitState,
    check_visit_transition,
    derive_visit_state,
    transition_participant,
)
from careline.signaling.visit_placement import VisitPlacer
from careline.signaling.visit_store import VisitStore

log = logging.getLogger(__name__)

#: States in which a participant may have media (send and receive).
MEDIA_STATES = frozenset({ParticipantState.ADMITTED, ParticipantState.CONNECTED})
#: States a family member keeps across a reconnect within the grace window.
KEPT_STATES = frozenset(
    {ParticipantState.ADMITTED, ParticipantState.CONNECTED, ParticipantState.RECONNECTING}
)


class VisitChannel(Protocol):
    """How the service reaches clients (the /visit socket.io namespace implements it)."""

    async def emit(self, event: str, data: Any, to: str) -> None:
        """Send `event` to one socket id or one room."""

    async def enter_room(self, sid: str, room: str) -> None:
        """Add a socket to a room."""

    async def disconnect(self, sid: str) -> None:
        """Close a socket."""

    def disconnect_after_reply(self, sid: str) -> None:
        """Close the caller's socket once the ack of its current event has been sent."""


@dataclass(frozen=True, slots=True)
class Invite:
    """Who is invited to a visit when it is created: an opaque subject id and what they are."""

    sub: str
    kind: ParticipantKind


@dataclass(frozen=True, slots=True)
class JoinResult:
    """What a participant gets on `visit.join`."""

    visit: Visit
    participant: Participant
    roster: tuple[Participant, ...]
    ice_servers: tuple[IceServerInfo, ...]


@dataclass(frozen=True, slots=True)
class VisitCensus:
    """What this node serves right now, for /metrics: counts only, never ids."""

    active_visits: int
    #: participants with a live (or reconnecting) connection to this node, by state
    participants: Mapping[str, int]
    #: participants with a media session, by their last network-quality level (0-5)
    quality: Mapping[int, int]


@dataclass(slots=True)
class _Live:
    sid: str
    visit_id: str
    participant_id: str
    state: ParticipantState
    grace: asyncio.TimerHandle | None = None
    #: in the visit room (admitted), so it gets the room's pushes
    in_room: bool = False
    #: the last network-quality level pushed for this participant
    quality: int | None = None
    #: it was sent every known level of its visit after entering the room
    briefed: bool = False


def visit_room(visit_id: str) -> str:
    """The room of everyone admitted to a visit."""
    return f"visit:{visit_id}"


def clinician_room(visit_id: str) -> str:
    """The room of a visit's clinicians (waiting-room notices, stats)."""
    return f"visit:{visit_id}:clinicians"


class VisitService:
    """The visit state machine driven by sockets and REST.

    Concurrency: every method may be called from concurrent tasks; per-visit changes are
    serialized by a lock, and grace timers run their work in tasks owned by the service.
    """

    def __init__(
        self,
        store: VisitStore,
        audit: AuditStore,
        revocations: RevocationStore,
        media: MediaGateway,
        *,
        grace_seconds: float,
        revoke_seconds: float,
        ice_servers: Callable[[str], Sequence[IceServerInfo]],
        clock: Callable[[], float] = time.time,
        max_participants: int = 8,
        quality_interval: float = 2.0,
        placement: VisitPlacer | None = None,
    ) -> None:
        self._store = store
        self._placement = placement
        self._quality_interval = quality_interval
        self._quality_task: asyncio.Task[None] | None = None
        self._max_participants = max_participants
        self._audit = audit
        self._revocations = revocations
        self._media = media
        self._grace = grace_seconds
        self._revoke_seconds = revoke_seconds
        self._ice_servers = ice_servers
        self._clock = clock
        self._channel: VisitChannel | None = None
        self._by_sid: dict[str, _Live] = {}
        self._by_participant: dict[str, _Live] = {}
        self._locks = KeyedLocks()
        self._work = BackgroundWork("visit")
        self._closed = False

    def bind(self, channel: VisitChannel) -> None:
        """Attach the channel (the namespace is built after the service)."""
        self._channel = channel

    @property
    def channel(self) -> VisitChannel:
        if self._channel is None:
            raise RuntimeError("VisitService has no channel bound")
        return self._channel

    # -- REST ----------------------------------------------------------------------------------

    async def create(
        self, principal: Principal, codec: str, invites: Sequence[Invite]
    ) -> tuple[Visit, list[Participant]]:
        """A clinician (who joins it) or an admin schedules a visit with its invitees."""
        if principal.role not in (Role.CLINICIAN, Role.ADMIN):
            raise Forbidden("only clinicians and admins create visits")
        if len(invites) > self._max_participants:
            raise InvalidPayload(
                f"a visit may invite at most {self._max_participants} participants",
                code="visit.too_many_participants",
            )
        now = self._clock()
        visit = Visit(
            visit_id=_new_id("v"),
            state=VisitState.SCHEDULED,
            codec=codec,
            created_by=principal.sub,
            created_at=now,
            ended_at=None,
            version=1,
        )
        everyone = list(invites)
        if principal.role is Role.CLINICIAN and all(i.sub != principal.sub for i in everyone):
            everyone.insert(0, Invite(principal.sub, ParticipantKind.CLINICIAN))
        if len({i.sub for i in everyone}) != len(everyone):
            raise Conflict("each invitee must have a distinct sub")
        participants = [
            Participant(
                visit_id=visit.visit_id,
                participant_id=_new_id("p"),
                sub=invite.sub,
                kind=invite.kind,
                state=ParticipantState.INVITED,
                updated_at=now,
                grace_until=None,
            )
            for invite in everyone
        ]
        await self._store.create(visit, participants)
        await self._record(visit.visit_id, principal.sub, "created", {"invited": len(participants)})
        return visit, participants

    async def describe(
        self, principal: Principal, visit_id: str
    ) -> tuple[Visit, list[Participant]]:
        """The visit and its participants, for its clinicians and admins (parents: themselves)."""
        visit, participants = await self._load(visit_id)
        me = _find(participants, principal)
        if principal.role is Role.ADMIN or (
            me is not None and me.kind is ParticipantKind.CLINICIAN
        ):
            return visit, participants
        if me is not None and principal.visit_id == visit_id:
            return visit, [me]
        raise NotFound("no such visit")

    # -- socket events -------------------------------------------------------------------------

    async def join(self, principal: Principal, sid: str, visit_id: str) -> JoinResult:
        """Enter a visit: clinicians are admitted, family members wait (or resume within grace)."""
        self._check_scope(principal, visit_id)
        current = self._by_sid.get(sid)
        if current is not None and current.visit_id != visit_id:
            raise Conflict(
                "this connection is in another visit; use one connection per visit",
                code="visit.already_joined",
            )
        async with self._visit_lock(visit_id):
            visit, participants = await self._load(visit_id)
            if visit.state is VisitState.ENDED:
                raise Conflict("the visit has ended", code="visit.ended")
            me = _find(participants, principal)
            if me is None:
                raise Forbidden("not invited to this visit")
            if me.state in (ParticipantState.DENIED, ParticipantState.REMOVED):
                raise Forbidden(
                    f"this participant was {me.state.value}", code=f"visit.{me.state.value}"
                )
            await self._check_placement(visit_id)
            before = self._by_participant.get(me.participant_id)
            same_socket = before is not None and before.sid == sid
            await self._replace_live(me.participant_id, sid)
            target: ParticipantState
            if same_socket and me.state is ParticipantState.CONNECTED:
                target = me.state  # a repeated join on a socket with media changes nothing
            elif me.kind is ParticipantKind.CLINICIAN or me.state in KEPT_STATES:
                target = ParticipantState.ADMITTED
            else:
                target = ParticipantState.WAITING
            me = await self._move(me, target)
            live = _Live(
                sid=sid, visit_id=visit_id, participant_id=me.participant_id, state=me.state
            )
            self._by_sid[sid] = live
            self._by_participant[me.participant_id] = live
            participants = _replace(participants, me)
            visit = await self._derive(visit, participants)
            if me.state in MEDIA_STATES:
                await self.channel.enter_room(sid, visit_room(visit_id))
                live.in_room = True
            if me.kind is ParticipantKind.CLINICIAN:
                await self.channel.enter_room(sid, clinician_room(visit_id))
            await self._record(visit_id, principal.sub, "joined", {"state": me.state.value})
        await self._announce(visit, participants)
        return JoinResult(
            visit=visit,
            participant=me,
            roster=tuple(participants),
            ice_servers=tuple(self._ice_servers(principal.sub)),
        )

    async def admit(self, principal: Principal, sid: str, participant_id: str) -> Participant:
        """A clinician of the visit admits a waiting family member."""
        return await self._decide(principal, sid, participant_id, ParticipantState.ADMITTED)

    async def deny(self, principal: Principal, sid: str, participant_id: str) -> Participant:
        """A clinician of the visit turns a waiting family member away."""
        return await self._decide(principal, sid, participant_id, ParticipantState.DENIED)

    async def remove(self, principal: Principal, sid: str, participant_id: str) -> Participant:
        """A clinician removes a participant; their token for this visit is revoked."""
        return await self._decide(principal, sid, participant_id, ParticipantState.REMOVED)

    async def end(self, principal: Principal, sid: str) -> Visit:
        """A clinician ends the visit for everyone."""
        live = self._live(sid)
        async with self._visit_lock(live.visit_id):
            visit, participants = await self._load(live.visit_id)
            self._require_clinician(principal, participants)
            if visit.state is VisitState.ENDED:
                return visit
            check_visit_transition(visit.state, VisitState.ENDED)
            ended = dataclasses.replace(
                visit, state=VisitState.ENDED, ended_at=self._clock(), version=visit.version + 1
            )
            visit = await self._store.update_visit(ended, expected_version=ended.version - 1)
            await self._record(visit.visit_id, principal.sub, "ended", {})
        await self.channel.emit(
            "visit.ended", {"visit_id": visit.visit_id}, visit_room(visit.visit_id)
        )
        for other in [lv for lv in self._by_participant.values() if lv.visit_id == visit.visit_id]:
            await self._media.close_session(other.participant_id)
            if other.sid != sid and not other.in_room:  # the room was told already
                await self.channel.emit("visit.ended", {"visit_id": visit.visit_id}, other.sid)
            await self._drop_live(other)
            if other.sid == sid:
                self.channel.disconnect_after_reply(sid)
            else:
                await self.channel.disconnect(other.sid)
        return visit

    async def start_media(self, principal: Principal, sid: str) -> MediaOffer:
        """Open (or restart) this participant's peer connection; returns the server's offer."""
        live = self._live(sid)
        async with self._visit_lock(live.visit_id):
            visit, participants = await self._load(live.visit_id)
            me = _by_id(participants, live.participant_id)
            if me.state not in MEDIA_STATES:
                raise Forbidden("not admitted to this visit yet", code="visit.not_admitted")
            offer = await self._media.open_session(visit.visit_id, me.participant_id, visit.codec)
            if me.state is not ParticipantState.CONNECTED:
                me = await self._move(me, ParticipantState.CONNECTED)
                participants = _replace(participants, me)
                visit = await self._derive(visit, participants)
                await self._record(visit.visit_id, principal.sub, "media_started", {})
        await self._announce(visit, participants)
        return offer

    async def answer_media(self, principal: Principal, sid: str, sdp: str) -> None:
        """The participant's answer to the server's latest offer."""
        live = self._live(sid)
        await self._media.accept_answer(live.participant_id, sdp)

    async def stats(self, principal: Principal, sid: str) -> dict[str, MediaStats]:
        """Media stats of every participant with media, for the visit's clinicians."""
        live = self._live(sid)
        _, participants = await self._load(live.visit_id)
        self._require_clinician(principal, participants)
        found: dict[str, MediaStats] = {}
        for participant in participants:
            stats = await self._media.stats(participant.participant_id)
            if stats is not None:
                found[participant.participant_id] = stats
        return found

    async def disconnected(self, sid: str) -> None:
        """A socket went away: its participant is kept for the grace window, then leaves."""
        live = self._by_sid.pop(sid, None)
        if live is None or self._by_participant.get(live.participant_id) is not live:
            return
        if await self._moved_away(live.visit_id):
            del self._by_participant[live.participant_id]
            await self._media.close_session(live.participant_id)
            return
        loop = asyncio.get_running_loop()
        try:
            async with self._visit_lock(live.visit_id):
                visit, participants = await self._load(live.visit_id)
                me = _by_id(participants, live.participant_id)
                if me.state in (ParticipantState.ADMITTED, ParticipantState.CONNECTED):
                    me = await self._move(me, ParticipantState.RECONNECTING)
                    participants = _replace(participants, me)
                    visit = await self._derive(visit, participants)
        except StoreUnavailable:
            # The store is away: the participant still gets its grace window (and leaves at
            # its end); its stored state says admitted until then.
            log.info("a participant left while the store was unavailable")
            live.grace = loop.call_later(self._grace, self._grace_over, live)
            return
        await self._announce(visit, participants)
        live.grace = loop.call_later(self._grace, self._grace_over, live)

    # -- media events (MediaListener) ------------------------------------------------------------

    def media_offer(self, session_id: str, offer: MediaOffer) -> None:
        """Deliver a renegotiation offer to the participant's socket."""
        live = self._by_participant.get(session_id)
        if live is not None and live.grace is None:
            self._spawn(self.channel.emit("media.offer", offer_payload(offer), live.sid))

    def media_tracks(self, session_id: str, tracks: tuple[TrackInfo, ...]) -> None:
        """Tell the participant which publisher each of its m-lines now carries."""
        live = self._by_participant.get(session_id)
        if live is not None and live.grace is None:
            self._spawn(self.channel.emit("media.tracks", tracks_payload(tracks), live.sid))

    def media_state(self, session_id: str, state: str) -> None:
        """Pass the peer connection state to the participant's socket."""
        live = self._by_participant.get(session_id)
        if live is not None and live.grace is None:
            self._spawn(self.channel.emit("media.state", {"state": state}, live.sid))

    # -- network quality and census ----------------------------------------------------------------

    async def push_quality(self) -> None:
        """One round of network-quality pushes (the quality loop runs one every interval).

        As LiveKit's ConnectionQualityUpdate: a participant's level (0-5, from its media stats)
        goes to its visit room when it changed, and whoever entered a visit room since the last
        round is sent every known level of that visit once.
        """
        changed: list[_Live] = []
        for live in list(self._by_participant.values()):
            stats = await self._media.stats(live.participant_id)
            if stats is None or self._by_participant.get(live.participant_id) is not live:
                continue  # no media session (waiting room, not started), or gone meanwhile
            if stats.quality != live.quality:
                live.quality = stats.quality
                changed.append(live)
        for live in changed:
            await self.channel.emit(
                "visit.quality", _quality_payload(live), visit_room(live.visit_id)
            )
        for live in list(self._by_participant.values()):
            if not live.in_room or live.briefed or live.grace is not None:
                continue
            live.briefed = True
            known = [
                other
                for other in list(self._by_participant.values())
                if other.visit_id == live.visit_id
                and other.quality is not None
                and other not in changed
            ]
            for other in known:
                await self.channel.emit("visit.quality", _quality_payload(other), live.sid)

    def census(self) -> VisitCensus:
        """Counts of what this node serves (visits, participants by state, quality levels)."""
        lives = list(self._by_participant.values())
        return VisitCensus(
            active_visits=len({live.visit_id for live in lives}),
            participants=Counter(live.state.value for live in lives),
            quality=Counter(live.quality for live in lives if live.quality is not None),
        )

    async def hand_over_moved(self) -> int:
        """Send the participants of visits that now live on another node there.

        This node was cut off from the cluster for longer than its lease while serving them,
        and a join elsewhere placed the visit again on another node. Each participant here gets
        `visit.moved` with that node's URL, its media session closes and its socket is closed
        (after the push); it joins again there with its admitted state (kept in the store).
        Returns how many were sent away. StoreUnavailable if the store cannot be read.
        """
        if self._placement is None:
            return 0
        moved = await self._placement.moved_away({live.visit_id for live in self._by_sid.values()})
        sent = 0
        for visit_id, node in moved.items():
            async with self._visit_lock(visit_id):
                here = [x for x in self._by_sid.values() if x.visit_id == visit_id]
                for live in here:
                    payload = {"visit_id": visit_id, "node_url": node.url}
                    await self.channel.emit("visit.moved", payload, live.sid)
                    await self._drop_live(live)
                    await self._media.close_session(live.participant_id)
                    await self.channel.disconnect(live.sid)
            sent += len(here)
            log.info("visit %s moved to node %s: %d sent there", visit_id, node.node_id, len(here))
        return sent

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the network-quality loop (owned by the service; `close` stops it)."""
        if self._quality_task is None and not self._closed:
            self._quality_task = asyncio.get_running_loop().create_task(
                self._quality_loop(), name="careline-visit-quality"
            )

    async def _quality_loop(self) -> None:
        while True:
            await asyncio.sleep(self._quality_interval)
            try:
                await self.push_quality()
            except (SignalingError, ConnectionError) as exc:
                log.warning("network-quality round skipped: %s", exc.__class__.__name__)
            except Exception:
                log.exception("network-quality round failed")

    async def close(self) -> None:
        """Stop the quality loop, grace timers and pending work (shutdown); safe to call twice."""
        if self._closed:
            return
        self._closed = True
        task, self._quality_task = self._quality_task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        for live in list(self._by_participant.values()):
            if live.grace is not None:
                live.grace.cancel()
        await self._work.close()

    # -- internals -------------------------------------------------------------------------------

    def _check_scope(self, principal: Principal, visit_id: str) -> None:
        if principal.role not in (Role.PARENT, Role.CLINICIAN):
            raise Forbidden("this role cannot join visits")
        if principal.visit_id is not None and principal.visit_id != visit_id:
            raise Forbidden("the token is for another visit")
        if principal.visit_id is None and principal.role is Role.PARENT:
            raise Forbidden("a family member's token must name the visit")

    async def _check_placement(self, visit_id: str) -> None:
        """With several nodes, a visit's media lives on one: joins elsewhere are sent there."""
        if self._placement is None:
            return
        owner = await self._placement.owner(visit_id)
        if owner.node_id != self._placement.node_id:
            raise WrongNode("this visit is served by another node", node_url=owner.url)

    def _live(self, sid: str) -> _Live:
        live = self._by_sid.get(sid)
        if live is None:
            raise Conflict("join a visit first", code="visit.not_joined")
        return live

    def _visit_lock(self, visit_id: str) -> AbstractAsyncContextManager[None]:
        return self._locks.hold(visit_id)

    async def _load(self, visit_id: str) -> tuple[Visit, list[Participant]]:
        visit = await self._store.get(visit_id)
        if visit is None:
            raise NotFound("no such visit")
        return visit, list(await self._store.participants(visit_id))

    async def _move(self, participant: Participant, target: ParticipantState) -> Participant:
        moved = transition_participant(participant, target, self._clock())
        if moved is not participant:
            await self._store.upsert_participant(moved)
            live = self._by_participant.get(moved.participant_id)
            if live is not None:
                live.state = moved.state
        return moved

    async def _derive(self, visit: Visit, participants: Sequence[Participant]) -> Visit:
        state = derive_visit_state(visit, participants)
        if state is visit.state:
            return visit
        check_visit_transition(visit.state, state)
        updated = dataclasses.replace(visit, state=state, version=visit.version + 1)
        return await self._store.update_visit(updated, expected_version=visit.version)

    async def _decide(
        self, principal: Principal, sid: str, participant_id: str, target: ParticipantState
    ) -> Participant:
        live = self._live(sid)
        async with self._visit_lock(live.visit_id):
            visit, participants = await self._load(live.visit_id)
            self._require_clinician(principal, participants)
            them = _by_id(participants, participant_id)
            if them.kind is ParticipantKind.CLINICIAN and target is not ParticipantState.REMOVED:
                raise Conflict("clinicians are not admitted or denied")
            if target is ParticipantState.ADMITTED and them.state in KEPT_STATES:
                return them  # already in the visit: admitting again changes nothing
            them = await self._move(them, target)
            participants = _replace(participants, them)
            visit = await self._derive(visit, participants)
            await self._record(
                visit.visit_id, principal.sub, target.value, {"participant": participant_id}
            )
            if target is ParticipantState.REMOVED:
                until = self._clock() + self._revoke_seconds
                await self._revocations.revoke(
                    subject_revocation_key(them.sub, visit.visit_id), until
                )
        their = self._by_participant.get(participant_id)
        event = {
            ParticipantState.ADMITTED: "visit.admitted",
            ParticipantState.DENIED: "visit.denied",
            ParticipantState.REMOVED: "visit.removed",
        }[target]
        if their is not None:
            await self.channel.emit(event, {"visit_id": visit.visit_id}, their.sid)
            if target is ParticipantState.ADMITTED:
                await self.channel.enter_room(their.sid, visit_room(visit.visit_id))
                their.in_room = True
            else:
                await self._media.close_session(participant_id)
                await self._drop_live(their)
                await self.channel.disconnect(their.sid)
        elif target is ParticipantState.REMOVED:
            await self._media.close_session(participant_id)
        await self._announce(visit, participants)
        return them

    def _require_clinician(self, principal: Principal, participants: Sequence[Participant]) -> None:
        me = _find(participants, principal)
        if me is None or me.kind is not ParticipantKind.CLINICIAN:
            raise Forbidden("only the visit's clinicians may do this")

    async def _replace_live(self, participant_id: str, sid: str) -> None:
        """A second connection of the same participant replaces the first.

        If the first is still connected (another device took over), its media session closes
        too: a device told it was replaced must not keep sending into the visit. A rejoin within
        the grace window keeps the media session until the participant restarts it.
        """
        old = self._by_participant.get(participant_id)
        if old is None:
            return
        if old.grace is not None:
            old.grace.cancel()
            old.grace = None
        if old.sid != sid and old.sid in self._by_sid:
            await self.channel.emit("visit.replaced", {"reason": "joined elsewhere"}, old.sid)
            await self._drop_live(old)
            await self._media.close_session(participant_id)
            await self.channel.disconnect(old.sid)
        else:
            await self._drop_live(old)

    async def _drop_live(self, live: _Live) -> None:
        if live.grace is not None:
            live.grace.cancel()
            live.grace = None
        self._by_sid.pop(live.sid, None)
        if self._by_participant.get(live.participant_id) is live:
            del self._by_participant[live.participant_id]

    def _grace_over(self, live: _Live) -> None:
        live.grace = None
        if self._by_participant.get(live.participant_id) is live:
            self._spawn(self._leave(live))

    async def _leave(self, live: _Live) -> None:
        if self._by_participant.get(live.participant_id) is not live:
            return  # rejoined meanwhile
        del self._by_participant[live.participant_id]
        await self._media.close_session(live.participant_id)
        if await self._moved_away(live.visit_id):
            return
        async with self._visit_lock(live.visit_id):
            visit, participants = await self._load(live.visit_id)
            me = _by_id(participants, live.participant_id)
            if me.state in (
                ParticipantState.RECONNECTING,
                ParticipantState.WAITING,
                ParticipantState.ADMITTED,
            ):
                me = await self._move(me, ParticipantState.LEFT)
                participants = _replace(participants, me)
                if visit.state is not VisitState.ENDED:
                    visit = await self._derive(visit, participants)
                await self._record(visit.visit_id, me.sub, "left", {})
        await self._announce(visit, participants)

    async def _moved_away(self, visit_id: str) -> bool:
        """Whether the visit now lives on another node (this one was cut off past its lease):
        its participants' stored states are that node's to change, not this one's."""
        if self._placement is None:
            return False
        try:
            return bool(await self._placement.moved_away({visit_id}))
        except StoreUnavailable:
            return False

    async def _announce(self, visit: Visit, participants: Sequence[Participant]) -> None:
        """Send the roster to the visit room and the waiting list to its clinicians."""
        payload = roster_payload(visit, participants)
        await self.channel.emit("visit.roster", payload, visit_room(visit.visit_id))
        waiting = [p.participant_id for p in participants if p.state is ParticipantState.WAITING]
        await self.channel.emit(
            "visit.waiting_room", {"waiting": waiting}, clinician_room(visit.visit_id)
        )

    async def _record(self, visit_id: str, actor: str, action: str, detail: dict[str, Any]) -> None:
        await self._audit.append(visit_id, actor, action, detail, at=self._clock())

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        self._work.spawn(work)


def roster_payload(visit: Visit, participants: Sequence[Participant]) -> dict[str, Any]:
    """The roster clients render: opaque ids, kinds and states only."""
    return {
        "visit_id": visit.visit_id,
        "state": visit.state.value,
        "participants": [
            {"participant_id": p.participant_id, "kind": p.kind.value, "state": p.state.value}
            for p in participants
        ],
    }


def _quality_payload(live: _Live) -> dict[str, Any]:
    """A `visit.quality` push: one participant's network-quality level."""
    return {"participant_id": live.participant_id, "level": live.quality}


def _new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_urlsafe(9)}"


def _find(participants: Sequence[Participant], principal: Principal) -> Participant | None:
    """The participant a token acts as: the same sub, and a clinician role for clinicians only."""
    clinician = principal.role is Role.CLINICIAN
    return next(
        (
            p
            for p in participants
            if p.sub == principal.sub and (p.kind is ParticipantKind.CLINICIAN) == clinician
        ),
        None,
    )


def _by_id(participants: Sequence[Participant], participant_id: str) -> Participant:
    found = next((p for p in participants if p.participant_id == participant_id), None)
    if found is None:
        raise NotFound("no such participant in this visit")
    return found


def _replace(participants: list[Participant], changed: Participant) -> list[Participant]:
    return [changed if p.participant_id == changed.participant_id else p for p in participants]
