"""Errors of the signaling domain; each carries the code a client sees.

The edge (HTTP middleware, socket.io acks) maps these to wire errors in one place; handlers only
raise them.
"""

from __future__ import annotations


class SignalingError(Exception):
    """Root of every error a client may see. `code` is stable and documented in docs/protocol.md."""

    code: str = "error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def details(self) -> dict[str, str]:
        """Extra fields of the wire error beside code and message (none by default)."""
        return {}


class InvalidPayload(SignalingError):
    """The request body or event payload does not match its schema."""

    code = "invalid_payload"


class UnknownEvent(SignalingError):
    """A socket.io event name the server does not handle."""

    code = "unknown_event"


class AuthError(SignalingError):
    """The caller could not be authenticated; the code names why (auth.expired, ...)."""

    code = "auth.invalid"


class Forbidden(SignalingError):
    """The caller is authenticated but its role or scope does not allow this."""

    code = "forbidden"


class NotFound(SignalingError):
    """The named resource does not exist (or is not visible to the caller)."""

    code = "not_found"


class Conflict(SignalingError):
    """The request conflicts with the current state (a checked state transition failed)."""

    code = "conflict"


class RateLimited(SignalingError):
    """The caller sent too much, too fast."""

    code = "rate_limited"


class TooLarge(SignalingError):
    """A text or file is larger than the deployment allows."""

    code = "payload_too_large"


class UnsupportedMedia(SignalingError):
    """A file's content is not of a type the server accepts (judged by its bytes, not its name)."""

    code = "unsupported_media_type"


class MediaRefused(SignalingError):
    """The media plane refused the request; `code` is its own (media.bad_sdp, ...)."""

    code = "media.error"


class StoreUnavailable(SignalingError):
    """The storage backend cannot be reached; the request changed nothing."""

    code = "store_unavailable"


class WrongNode(SignalingError):
    """This node does not hold the visit's (or call's) media; the client should use `node_url`."""

    code = "visit.wrong_node"

    def __init__(self, message: str, *, node_url: str, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.node_url = node_url

    def details(self) -> dict[str, str]:
        """The URL of the node that holds the visit."""
        return {"node_url": self.node_url}
