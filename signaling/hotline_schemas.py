"""Public payload schemas of the pharmacist hotline (HTTP bodies and the /hotline namespace)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from careline.signaling.audit_view import AuditEventView
from careline.signaling.schemas import IceServerInfo, OpaqueId, Schema

#: A skill: a short opaque tag such as "lang:es" or "licence:CA".
Skill = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
Skills = Annotated[list[Skill], msgspec.Meta(max_length=16)]
#: Order tokens are JWTs; bounded before anything parses them.
OrderToken = Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]


# -- /hotline events (inbound) --------------------------------------------------------------


class PlaceCallRequest(Schema, frozen=True):
    """`hotline.call` (kiosk): call about the order whose QR code was scanned."""

    order_token: OrderToken


class PresenceRequest(Schema, frozen=True):
    """`hotline.presence` (pharmacist): ready for calls, or paused."""

    state: Literal["available", "away"]


class CallIdRequest(Schema, frozen=True):
    """`hotline.accept`, `hotline.decline` (pharmacist)."""

    call_id: OpaqueId


# -- REST (inbound) -------------------------------------------------------------------------


class RegisterKioskRequest(Schema, frozen=True):
    """`POST /api/kiosks` (admin); the id is generated when omitted."""

    kiosk_id: OpaqueId | None = None
    site: OpaqueId | None = None
    skills: Skills = msgspec.field(default_factory=list)


class KioskTokenRequest(Schema, frozen=True):
    """`POST /api/kiosks/{kiosk_id}/token`: the device secret for a short-lived kiosk token."""

    secret: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class SkillsRequest(Schema, frozen=True):
    """`PUT /api/hotline/pharmacists/{sub}` (admin): a pharmacist's skills."""

    skills: Skills


# -- views (outbound) -----------------------------------------------------------------------


class CallView(msgspec.Struct, frozen=True, kw_only=True):
    """A call as a kiosk or pharmacist sees it: opaque ids, state and times only.

    `session_id` is the viewer's own media session of a connected call and `peer_session_id`
    the other side's (the `publisher` of the tracks it receives).
    """

    call_id: str
    state: str
    order_id: str
    kiosk_id: str
    skills: list[str]
    enqueued_at: float
    offered_at: float | None
    accepted_at: float | None
    ended_at: float | None
    end_reason: str | None
    pharmacist: str | None
    kiosk_connected: bool
    callback_offered: bool
    ring_deadline: float | None = None
    position: int | None = None
    estimated_wait_seconds: float | None = None
    session_id: str | None = None
    peer_session_id: str | None = None


class PresenceView(msgspec.Struct, frozen=True, kw_only=True):
    """A pharmacist's presence."""

    sub: str
    state: str
    since: float
    skills: list[str]
    call_id: str | None
    wrap_until: float | None
    reason: str | None


class CallReply(msgspec.Struct, frozen=True, kw_only=True):
    """Reply to `hotline.call`, `hotline.accept` and `hotline.resume`."""

    call: CallView
    ice_servers: list[IceServerInfo]


class PositionView(msgspec.Struct, frozen=True, kw_only=True):
    """`hotline.position` push: where a queued call stands."""

    call_id: str
    position: int
    estimated_wait_seconds: float | None


class KioskView(msgspec.Struct, frozen=True, kw_only=True):
    """A registered kiosk (never its secret)."""

    kiosk_id: str
    site: str | None
    skills: list[str]
    created_at: float
    enabled: bool
    disabled_at: float | None


class RegisteredKiosk(msgspec.Struct, frozen=True, kw_only=True):
    """Reply to `POST /api/kiosks`: the device secret is shown this once."""

    kiosk: KioskView
    secret: str


class KioskTokenReply(msgspec.Struct, frozen=True, kw_only=True):
    """Reply to `POST /api/kiosks/{kiosk_id}/token`."""

    token: str
    token_id: str
    expires_at: int


class CallRecordView(msgspec.Struct, frozen=True, kw_only=True):
    """Reply to `GET /api/hotline/calls/{call_id}` (admin)."""

    call: CallView
    offers: int
    events: list[AuditEventView]
