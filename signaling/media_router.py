"""Routes the media plane's events to the service that owns each session (visits, hotline calls).

The gateway reports to one MediaListener; several services open media sessions. A service claims
the session ids it opens; events of unclaimed sessions go to the fallback (the visit service).
"""

from __future__ import annotations

from careline.signaling.media_gateway import MediaListener, MediaOffer, TrackInfo


class MediaRouter:
    """A MediaListener that forwards each event to the listener owning its session id."""

    def __init__(self, fallback: MediaListener) -> None:
        self._fallback = fallback
        self._owners: dict[str, MediaListener] = {}

    def claim(self, session_id: str, listener: MediaListener) -> None:
        """Send events of `session_id` to `listener` from now on."""
        self._owners[session_id] = listener

    def release(self, session_id: str) -> None:
        """Forget the owner of `session_id` (idempotent)."""
        self._owners.pop(session_id, None)

    def _owner(self, session_id: str) -> MediaListener:
        return self._owners.get(session_id, self._fallback)

    def media_offer(self, session_id: str, offer: MediaOffer) -> None:
        """A renegotiation offer for the session's client."""
        self._owner(session_id).media_offer(session_id, offer)

    def media_tracks(self, session_id: str, tracks: tuple[TrackInfo, ...]) -> None:
        """The session's m-lines now carry other publishers."""
        self._owner(session_id).media_tracks(session_id, tracks)

    def media_state(self, session_id: str, state: str) -> None:
        """The session's connection state changed."""
        self._owner(session_id).media_state(session_id, state)
