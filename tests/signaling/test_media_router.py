"""MediaRouter: events reach the service that claimed the session, else the fallback."""

from __future__ import annotations

from careline.signaling.media_gateway import MediaOffer, TrackInfo
from careline.signaling.media_router import MediaRouter


class Recorder:
    """A MediaListener that records what it is told."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def media_offer(self, session_id: str, offer: MediaOffer) -> None:
        self.events.append(("offer", session_id))

    def media_tracks(self, session_id: str, tracks: tuple[TrackInfo, ...]) -> None:
        self.events.append(("tracks", session_id))

    def media_state(self, session_id: str, state: str) -> None:
        self.events.append((state, session_id))


def test_claimed_sessions_go_to_their_owner_and_the_rest_to_the_fallback() -> None:
    visits, hotline = Recorder(), Recorder()
    router = MediaRouter(fallback=visits)
    router.claim("call-1", hotline)
    offer = MediaOffer(sdp="v=0", tracks=(), publish={})
    router.media_offer("call-1", offer)
    router.media_tracks("call-1", (TrackInfo("2", "p", "video"),))
    router.media_state("p-1", "connected")
    assert hotline.events == [("offer", "call-1"), ("tracks", "call-1")]
    assert visits.events == [("connected", "p-1")]
    router.release("call-1")
    router.release("call-1")
    router.media_state("call-1", "closed")
    assert visits.events[-1] == ("closed", "call-1")
