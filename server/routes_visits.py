"""REST for video visits: create with join links, describe, audit trail."""

from __future__ import annotations

import secrets
from typing import Any

import msgspec
from aiohttp import web

from careline.server.app_keys import SETTINGS, STORAGE, TOKENS, VISITS
from careline.server.http_edge import require_principal
from careline.signaling.audit_view import AuditTrail, audit_event_view
from careline.signaling.errors import Forbidden, InvalidPayload
from careline.signaling.identity import Role
from careline.signaling.schemas import parse_json
from careline.signaling.visit import ParticipantKind
from careline.signaling.visit_namespace import visit_view
from careline.signaling.visit_schemas import (
    CreatedVisit,
    CreateVisitRequest,
    InvitedParticipant,
)
from careline.signaling.visit_service import Invite

routes = web.RouteTableDef()
#: Most audit events one `GET /api/visits/{id}/audit` returns.
_MAX_AUDIT_PAGE = 1000


def _json(value: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(value), status=status, content_type="application/json"
    )


@routes.post("/api/visits")
async def create_visit(request: web.Request) -> web.Response:
    """A clinician or admin creates a visit; every invitee gets a scoped, expiring join token."""
    principal = await require_principal(request)
    body = parse_json(CreateVisitRequest, await request.read())
    settings = request.app[SETTINGS]
    invites = [
        Invite(sub=i.sub or f"guest-{secrets.token_urlsafe(6)}", kind=ParticipantKind(i.kind))
        for i in body.participants
    ]
    visit, participants = await request.app[VISITS].create(
        principal, body.codec or settings.visits.default_codec, invites
    )
    issuer = request.app[TOKENS]
    invited = []
    for participant in participants:
        role = Role.CLINICIAN if participant.kind is ParticipantKind.CLINICIAN else Role.PARENT
        issued = issuer.issue(
            sub=participant.sub,
            role=role,
            visit_id=visit.visit_id,
            ttl=settings.visits.link_ttl_seconds,
        )
        invited.append(
            InvitedParticipant(
                participant_id=participant.participant_id,
                sub=participant.sub,
                kind=participant.kind.value,
                token=issued.token,
                link=f"/visit/{visit.visit_id}?token={issued.token}",
                expires_at=issued.expires_at,
            )
        )
    return _json(CreatedVisit(visit=visit_view(visit, participants), invited=invited), 201)


@routes.get("/api/visits/{visit_id}")
async def get_visit(request: web.Request) -> web.Response:
    """State and participants, for the visit's clinicians and admins (a parent sees itself)."""
    principal = await require_principal(request)
    visit, participants = await request.app[VISITS].describe(
        principal, request.match_info["visit_id"]
    )
    return _json(visit_view(visit, participants))


@routes.get("/api/visits/{visit_id}/audit")
async def get_audit(request: web.Request) -> web.Response:
    """The visit's audit trail (opaque ids only), for its clinicians and admins."""
    principal = await require_principal(request)
    visit_id = request.match_info["visit_id"]
    _, participants = await request.app[VISITS].describe(principal, visit_id)
    clinicians = {p.sub for p in participants if p.kind is ParticipantKind.CLINICIAN}
    if principal.role is not Role.ADMIN and not (
        principal.role is Role.CLINICIAN and principal.sub in clinicians
    ):
        raise Forbidden("only the visit's clinicians and admins see its audit trail")
    try:
        after = int(request.query.get("after_seq", "0"))
        limit = min(int(request.query.get("limit", "100")), _MAX_AUDIT_PAGE)
    except ValueError:
        raise InvalidPayload("after_seq and limit must be integers") from None
    if after < 0 or limit < 1:
        raise InvalidPayload("after_seq must be 0 or more, and limit 1 or more")
    events = await request.app[STORAGE].audit.list(visit_id, after_seq=after, limit=limit)
    return _json(AuditTrail(events=[audit_event_view(e) for e in events]))
