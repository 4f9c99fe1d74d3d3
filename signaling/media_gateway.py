"""How signaling drives the media plane: a Protocol with primitive arguments, and its events.

server/ implements MediaGateway over media.Sfu, so signaling never imports media/ and each side
is testable alone. Every method raises signaling.errors.MediaRefused (with the media plane's
code) when the media plane refuses the request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class TrackInfo:
    """What one m-line of a participant's peer connection carries."""

    mid: str
    publisher: str
    kind: str


@dataclass(frozen=True, slots=True)
class MediaOffer:
    """A server offer: SDP, the tracks it carries, and the m-lines to publish on (kind -> mid)."""

    sdp: str
    tracks: tuple[TrackInfo, ...]
    publish: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class MediaStats:
    """Media counters of one session, for the clinician's view and /metrics."""

    state: str
    frames_in: int
    frames_forwarded: int
    frames_dropped: int
    bitrate_in_kbps: float
    packet_loss: float
    rtt_ms: float | None
    quality: int


class MediaGateway(Protocol):
    """The media plane as signaling sees it. Sessions and rooms are opaque ids."""

    async def open_session(self, room_id: str, session_id: str, video_codec: str) -> MediaOffer:
        """Open (or reopen) a peer session subscribed to everything in the room; its offer."""
        ...

    async def accept_answer(self, session_id: str, sdp: str) -> None:
        """Apply the client's answer to the session's outstanding offer."""
        ...

    async def close_session(self, session_id: str) -> None:
        """Close a session (idempotent)."""
        ...

    async def stats(self, session_id: str) -> MediaStats | None:
        """Current counters of a session, or None if it is not open."""
        ...


class MediaListener(Protocol):
    """What the media plane reports back (implemented by the visit service)."""

    def media_offer(self, session_id: str, offer: MediaOffer) -> None:
        """A renegotiation offer to deliver to the session's client."""

    def media_tracks(self, session_id: str, tracks: tuple[TrackInfo, ...]) -> None:
        """The session's m-lines now carry other publishers."""

    def media_state(self, session_id: str, state: str) -> None:
        """The session's connection state changed."""
