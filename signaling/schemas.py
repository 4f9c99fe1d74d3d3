"""Public payload schemas of the wire protocol (HTTP JSON bodies and socket.io payloads).

Every inbound payload becomes one of these Structs in one call (`parse`), or InvalidPayload naming
the offending field. The load tester imports this module; keep it free of server internals.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

import msgspec

from careline.signaling.errors import InvalidPayload
from careline.signaling.identity import Role

#: Opaque ids: short, printable, no spaces. Never names or other personal data.
OPAQUE_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,128}$"
OpaqueId = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=OPAQUE_ID_PATTERN)]

S = TypeVar("S", bound="Schema")


class Schema(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Base of every inbound payload: immutable, unknown fields rejected."""


def parse(schema: type[S], payload: Any) -> S:
    """Convert a decoded payload (msgpack or JSON) into `schema`, or raise InvalidPayload."""
    if payload is None:
        payload = {}
    try:
        return msgspec.convert(payload, schema, strict=True)
    except msgspec.ValidationError as exc:
        raise InvalidPayload(_describe(exc)) from None


def parse_json(schema: type[S], body: bytes) -> S:
    """Decode a JSON body straight into `schema`, or raise InvalidPayload."""
    if not body.strip():
        body = b"{}"
    try:
        return msgspec.json.decode(body, type=schema, strict=True)
    except msgspec.ValidationError as exc:
        raise InvalidPayload(_describe(exc)) from None
    except msgspec.DecodeError:
        raise InvalidPayload("the body is not valid JSON") from None


def _describe(exc: msgspec.ValidationError) -> str:
    text = str(exc)
    return text.replace("`$.", "`").replace("`$`", "the payload")


# -- session (socket.io "/" namespace) -------------------------------------------------------


class PingRequest(Schema, frozen=True):
    """`session.ping`: echo a client timestamp to measure round trips."""

    client_time: float


class PingReply(msgspec.Struct, frozen=True, kw_only=True):
    """Reply to `session.ping`."""

    client_time: float
    server_time: float


class WhoAmI(msgspec.Struct, frozen=True, kw_only=True):
    """What the server knows of the caller: opaque ids, role and token expiry."""

    sub: str
    role: Role
    expires_at: float
    visit_id: str | None = None
    thread_id: str | None = None


# -- tokens (HTTP, admin) --------------------------------------------------------------------


class TokenRequest(Schema, frozen=True):
    """`POST /api/tokens`: an admin mints a token for an opaque subject."""

    sub: OpaqueId
    role: Role
    visit_id: OpaqueId | None = None
    thread_id: OpaqueId | None = None
    ttl_seconds: Annotated[int, msgspec.Meta(ge=1)] | None = None


class TokenReply(msgspec.Struct, frozen=True, kw_only=True):
    """A minted token."""

    token: str
    token_id: str
    expires_at: int


class RevokeRequest(Schema, frozen=True):
    """`POST /api/tokens/revoke`: revoke one token, or every token of a subject (in a scope)."""

    token_id: OpaqueId | None = None
    sub: OpaqueId | None = None
    scope: OpaqueId | None = None
    until: float | None = None


# -- media (shared by visits and the hotline) ------------------------------------------------


class IceServerInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A STUN or TURN server for the client's RTCPeerConnection (RTCIceServer's shape)."""

    urls: list[str]
    username: str | None = None
    credential: str | None = None
