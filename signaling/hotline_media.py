"""The video of answered hotline calls: this node's media sessions and their socket events.

One SFU room per call with two sessions (kiosk and pharmacist), opened through the MediaGateway.
Session ids are claimed on the MediaRouter, so the media plane's events for them come here and
go to the socket that opened the session. A session lives as long as its call stays open with
its media on this node: the sweep closes those of calls that ended or moved elsewhere
(`close_stale`), whoever opened them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from careline.signaling.background_work import BackgroundWork
from careline.signaling.errors import Conflict
from careline.signaling.hotline_call import Call
from careline.signaling.hotline_config import HotlineChannel
from careline.signaling.media_gateway import MediaGateway, MediaOffer, TrackInfo
from careline.signaling.media_payloads import offer_payload, tracks_payload
from careline.signaling.media_router import MediaRouter


@dataclass(frozen=True, slots=True)
class _Owned:
    """Who opened a session here, for which call, and when (an `opened` mark)."""

    sid: str
    call_id: str
    mark: int


class HotlineMedia:
    """Media sessions of hotline calls on this node (a MediaListener for the router).

    Concurrency: pushes of media events run in tasks owned here; `close` cancels them and
    closes every session. Safe to close twice.
    """

    def __init__(
        self,
        media: MediaGateway,
        router: MediaRouter,
        channel: Callable[[], HotlineChannel],
        video_codec: str,
    ) -> None:
        self._media = media
        self._router = router
        self._channel = channel
        self._video_codec = video_codec
        self._sessions: dict[str, _Owned] = {}  # media session id -> its opener, on this node
        self._opened = 0  # sessions opened so far (the mark of the next one)
        self._work = BackgroundWork("hotline")

    async def open(self, call_id: str, session_id: str, sid: str) -> MediaOffer:
        """Open (or reopen) `sid`'s session of the call; the server's offer."""
        self._router.claim(session_id, self)
        self._sessions[session_id] = _Owned(sid, call_id, self._opened)
        self._opened += 1
        try:
            return await self._media.open_session(call_id, session_id, self._video_codec)
        except BaseException:
            self._sessions.pop(session_id, None)
            self._router.release(session_id)
            raise

    async def answer(self, sid: str, sdp: str) -> None:
        """The client's answer to the latest offer of the session `sid` opened."""
        session = next((s for s, owner in self._sessions.items() if owner.sid == sid), None)
        if session is None:
            raise Conflict("start media first", code="hotline.not_connected")
        await self._media.accept_answer(session, sdp)

    async def close_session(self, session_id: str) -> None:
        """Close one session (and forget who owned it)."""
        self._sessions.pop(session_id, None)
        self._router.release(session_id)
        await self._media.close_session(session_id)

    async def close_owned_by(self, sid: str) -> None:
        """Close every session the socket `sid` opened."""
        for session_id in [s for s, owner in self._sessions.items() if owner.sid == sid]:
            await self.close_session(session_id)

    async def call_ended(self, call: Call) -> None:
        """Close this node's sessions of an ended call."""
        for session in (call.kiosk_session, call.pharmacist_session):
            if session is not None and session in self._sessions:
                await self.close_session(session)

    def mark(self) -> int:
        """The mark of the next session opened here (for `close_stale`)."""
        return self._opened

    async def close_stale(self, calls: Sequence[Call], node: str, before: int) -> None:
        """Close the sessions opened before the mark `before` whose call is not among `calls`
        (the open calls, read after that mark) with its media on `node` (this node): the call
        ended, or its kiosk moved to another node, and this node may not have heard."""
        here = {c.call_id for c in calls if c.kiosk_node == node}
        for session_id, owned in list(self._sessions.items()):
            if owned.mark < before and owned.call_id not in here:
                await self.close_session(session_id)

    async def close(self) -> None:
        """Stop pending pushes and close every session of this node."""
        await self._work.close()
        for session_id in list(self._sessions):
            await self.close_session(session_id)

    # -- MediaListener ---------------------------------------------------------------------------

    def media_offer(self, session_id: str, offer: MediaOffer) -> None:
        """Deliver a renegotiation offer to the session's socket."""
        owned = self._sessions.get(session_id)
        if owned is not None:
            payload = offer_payload(offer)
            self._work.spawn(self._channel().emit("media.offer", payload, owned.sid))

    def media_tracks(self, session_id: str, tracks: tuple[TrackInfo, ...]) -> None:
        """Tell the socket which publisher each of its m-lines now carries."""
        owned = self._sessions.get(session_id)
        if owned is not None:
            payload = tracks_payload(tracks)
            self._work.spawn(self._channel().emit("media.tracks", payload, owned.sid))

    def media_state(self, session_id: str, state: str) -> None:
        """Pass the peer connection state to the session's socket."""
        owned = self._sessions.get(session_id)
        if owned is not None:
            self._work.spawn(self._channel().emit("media.state", {"state": state}, owned.sid))
