"""Errors of the media plane; each carries the code the client sees (mapped at the edge)."""

from __future__ import annotations


class MediaError(Exception):
    """Root of media/ errors."""

    code: str = "media.error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadSdp(MediaError):
    """The session description is malformed, hostile or too large."""

    code = "media.bad_sdp"


class CodecNotAllowed(MediaError):
    """The offer does not carry the room's codec."""

    code = "media.codec_not_allowed"


class NegotiationConflict(MediaError):
    """An offer or answer arrived in a signaling state that does not accept it."""

    code = "media.negotiation_conflict"


class UnknownSession(MediaError):
    """No peer session with that id (it was closed, or never opened)."""

    code = "media.unknown_session"


class IncompatibleAiortc(MediaError):
    """The installed aiortc lacks the internals the forwarding seam relies on."""

    code = "media.incompatible_aiortc"
