"""The SFU: rooms of peer sessions whose published tracks are forwarded, encoded, to each other.

The Sfu knows rooms and sessions by opaque ids only; it knows nothing of visits, users or
sockets. It reports through the SfuEvents callbacks the server injects (to send offers to the
right client), and is driven with primitive arguments (ids and SDP text).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

from aiortc import RTCIceServer

from careline.media.errors import UnknownSession
from careline.media.peer_session import PeerSession, SessionCallbacks
from careline.media.publication import Publication
from careline.media.seams import check_aiortc

log = logging.getLogger(__name__)

#: mid -> (publisher session id, kind)
TrackMap = Mapping[str, tuple[str, str]]


@dataclass(frozen=True, slots=True)
class IceServer:
    """A STUN or TURN server handed to aiortc (and, by the server, to clients)."""

    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = None


@dataclass(frozen=True, slots=True)
class SfuConfig:
    """Tunables of the media plane."""

    ice_servers: tuple[IceServer, ...] = ()
    keyframe_interval: float = 0.5
    video_queue_frames: int = 30
    audio_queue_frames: int = 25
    #: "encoded" forwards frames as they arrive; "transcode" decodes once and encodes per
    #: subscriber (aiortc MediaRelay), only as the baseline `careline bench sfu` compares with.
    forwarding: Literal["encoded", "transcode"] = "encoded"


@dataclass(frozen=True, slots=True)
class Offer:
    """A server offer for one session and the tracks its m-lines carry."""

    sdp: str
    tracks: TrackMap
    publish: Mapping[str, str]


class SfuEvents(Protocol):
    """What the Sfu tells its owner; called on the event loop, must not block."""

    def offer(self, session_id: str, offer: Offer) -> None:
        """Deliver a renegotiation offer to the session's client (it answers with accept_answer)."""

    def tracks(self, session_id: str, tracks: TrackMap) -> None:
        """The session's slots now carry other publishers (no renegotiation was needed)."""

    def state(self, session_id: str, state: str) -> None:
        """The session's connection state changed (connecting, connected, failed, closed)."""


@dataclass(slots=True)
class _Room:
    sessions: dict[str, PeerSession] = field(default_factory=dict)


class Sfu:
    """Owns every peer session of this process and the tasks that renegotiate them."""

    def __init__(self, config: SfuConfig, events: SfuEvents) -> None:
        check_aiortc()
        self._config = config
        self._events = events
        self._rooms: dict[str, _Room] = {}
        self._sessions: dict[str, PeerSession] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def session_count(self) -> int:
        """Open peer sessions."""
        return len(self._sessions)

    def session(self, session_id: str) -> PeerSession:
        """The open session with that id, or UnknownSession."""
        try:
            return self._sessions[session_id]
        except KeyError:
            raise UnknownSession("no media session with that id") from None

    def has_session(self, session_id: str) -> bool:
        """True if a session with that id is open."""
        return session_id in self._sessions

    async def open_session(self, room_id: str, session_id: str, video_codec: str) -> Offer:
        """Open a peer session in `room_id` subscribed to every track there; return its offer.

        An open session with the same id is closed first (a participant reconnecting).
        """
        if session_id in self._sessions:
            await self.close_session(session_id)
        session = PeerSession(
            session_id,
            room_id,
            video_codec,
            [_to_aiortc(s) for s in self._config.ice_servers],
            SessionCallbacks(self._on_publication, self._on_state, self._on_negotiation_needed),
            self._config.keyframe_interval,
            self._config.video_queue_frames,
            transcode=self._config.forwarding == "transcode",
        )
        room = self._rooms.setdefault(room_id, _Room())
        room.sessions[session_id] = session
        self._sessions[session_id] = session
        for other in room.sessions.values():
            if other is not session:
                for publication in other.publications.values():
                    session.subscribe(publication)
        sdp = await session.create_offer()
        assert sdp is not None  # the first offer always exists
        return Offer(sdp, session.track_map(), session.publish_mids())

    async def accept_answer(self, session_id: str, sdp: str) -> None:
        """Apply a client's answer to its session's outstanding offer."""
        await self.session(session_id).accept_answer(sdp)

    async def close_session(self, session_id: str) -> None:
        """Close a session; its tracks stop reaching the others (their slots become free)."""
        session = self._sessions.pop(session_id, None)
        if session is None:
            return
        room = self._rooms.get(session.room_id)
        if room is not None:
            room.sessions.pop(session_id, None)
            for other in room.sessions.values():
                for publication in session.publications.values():
                    other.unsubscribe(publication)
                self._events.tracks(other.session_id, other.track_map())
            if not room.sessions:
                del self._rooms[session.room_id]
        await session.close()

    async def close_room(self, room_id: str) -> None:
        """Close every session of a room."""
        room = self._rooms.get(room_id)
        for session_id in list(room.sessions) if room else []:
            await self.close_session(session_id)

    async def close(self) -> None:
        """Close every session and cancel renegotiations; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        for session_id in list(self._sessions):
            await self.close_session(session_id)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- callbacks from sessions --------------------------------------------------------------

    def _on_publication(self, session: PeerSession, publication: Publication) -> None:
        room = self._rooms.get(session.room_id)
        if room is None:
            return
        for other in room.sessions.values():
            if other is session or other.closed:
                continue
            if other.subscribe(publication):
                self._renegotiate(other)
            else:
                self._events.tracks(other.session_id, other.track_map())

    def _on_state(self, session: PeerSession, state: str) -> None:
        if self._sessions.get(session.session_id) is session:
            self._events.state(session.session_id, state)

    def _on_negotiation_needed(self, session: PeerSession) -> None:
        self._renegotiate(session)

    def _renegotiate(self, session: PeerSession) -> None:
        if self._closed:
            return
        task = asyncio.get_running_loop().create_task(self._send_offer(session))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_offer(self, session: PeerSession) -> None:
        try:
            sdp = await session.create_offer()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("renegotiation of session %s failed", session.session_id)
            return
        if sdp is not None and self._sessions.get(session.session_id) is session:
            self._events.offer(
                session.session_id, Offer(sdp, session.track_map(), session.publish_mids())
            )


def _to_aiortc(server: IceServer) -> RTCIceServer:
    return RTCIceServer(
        urls=list(server.urls), username=server.username, credential=server.credential
    )
