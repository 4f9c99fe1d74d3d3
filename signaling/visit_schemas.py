"""Public payload schemas of video visits (HTTP bodies and the /visit socket.io namespace)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from careline.signaling.schemas import IceServerInfo, OpaqueId, Schema

#: Session descriptions are bounded before anything parses them.
Sdp = Annotated[str, msgspec.Meta(min_length=1, max_length=64 * 1024)]
Kind = Literal["parent", "second_parent", "interpreter", "clinician"]
#: Hard cap on invitees per visit; `[visits] max_participants` (at most this) is the real limit.
MAX_INVITEES = 256


class InviteRequest(Schema, frozen=True):
    """One invitee of `POST /api/visits`; `sub` is generated when omitted."""

    kind: Kind
    sub: OpaqueId | None = None


class CreateVisitRequest(Schema, frozen=True):
    """`POST /api/visits`."""

    participants: Annotated[
        list[InviteRequest], msgspec.Meta(min_length=1, max_length=MAX_INVITEES)
    ]
    codec: Literal["vp8", "h264"] | None = None


class ParticipantView(msgspec.Struct, frozen=True, kw_only=True):
    """A participant as clients see it: opaque ids, kind and state."""

    participant_id: str
    kind: str
    state: str


class InvitedParticipant(msgspec.Struct, frozen=True, kw_only=True):
    """A created participant with its join token and link."""

    participant_id: str
    sub: str
    kind: str
    token: str
    link: str
    expires_at: int


class VisitView(msgspec.Struct, frozen=True, kw_only=True):
    """A visit's public state."""

    visit_id: str
    state: str
    codec: str
    created_at: float
    ended_at: float | None
    participants: list[ParticipantView]


class CreatedVisit(msgspec.Struct, frozen=True, kw_only=True):
    """Reply to `POST /api/visits`."""

    visit: VisitView
    invited: list[InvitedParticipant]


class JoinRequest(Schema, frozen=True):
    """`visit.join`."""

    visit_id: OpaqueId


class JoinReply(msgspec.Struct, frozen=True, kw_only=True):
    """Reply to `visit.join`."""

    participant_id: str
    state: str
    visit: VisitView
    ice_servers: list[IceServerInfo]


class ParticipantRequest(Schema, frozen=True):
    """`visit.admit`, `visit.deny`, `visit.remove`."""

    participant_id: OpaqueId


class AnswerRequest(Schema, frozen=True):
    """`media.answer`: the client's answer to the server's latest offer."""

    sdp: Sdp


class TrackView(msgspec.Struct, frozen=True, kw_only=True):
    """What one m-line carries."""

    mid: str
    publisher: str
    kind: str


class OfferReply(msgspec.Struct, frozen=True, kw_only=True):
    """Reply to `media.start` and payload of `media.offer`."""

    sdp: str
    tracks: list[TrackView]
    publish: dict[str, str]
