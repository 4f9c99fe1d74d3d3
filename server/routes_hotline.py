"""REST for the pharmacist hotline: the kiosk registry, kiosk tokens, skills, figures, records."""

from __future__ import annotations

import re
from typing import Any

import msgspec
from aiohttp import web

from careline.server.app_keys import HOTLINE, KIOSKS, SETTINGS, STORAGE, TOKENS
from careline.server.http_edge import require_principal
from careline.signaling.audit_view import audit_event_view
from careline.signaling.errors import InvalidPayload, NotFound
from careline.signaling.hotline_schemas import (
    CallRecordView,
    KioskTokenReply,
    KioskTokenRequest,
    RegisteredKiosk,
    RegisterKioskRequest,
    SkillsRequest,
)
from careline.signaling.hotline_views import call_view, kiosk_view
from careline.signaling.identity import Role
from careline.signaling.schemas import OPAQUE_ID_PATTERN, parse_json

routes = web.RouteTableDef()
_OPAQUE = re.compile(OPAQUE_ID_PATTERN)
_ID = "{kiosk_id:[A-Za-z0-9_.:-]{1,128}}"


def _json(value: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(value), status=status, content_type="application/json"
    )


@routes.post("/api/kiosks")
async def register_kiosk(request: web.Request) -> web.Response:
    """An admin registers a kiosk; the device secret is in this reply and nowhere else."""
    principal = await require_principal(request)
    body = parse_json(RegisterKioskRequest, await request.read())
    kiosk, secret = await request.app[KIOSKS].register(
        principal, body.kiosk_id, body.site, body.skills
    )
    return _json(RegisteredKiosk(kiosk=kiosk_view(kiosk), secret=secret), 201)


@routes.get(f"/api/kiosks/{_ID}")
async def get_kiosk(request: web.Request) -> web.Response:
    """A kiosk's registration (never its secret), for admins."""
    principal = await require_principal(request)
    kiosk = await request.app[KIOSKS].get(principal, request.match_info["kiosk_id"])
    return _json(kiosk_view(kiosk))


@routes.post(f"/api/kiosks/{_ID}/token")
async def kiosk_token(request: web.Request) -> web.Response:
    """A kiosk exchanges its id and device secret for a short-lived kiosk token (renewal too)."""
    body = parse_json(KioskTokenRequest, await request.read())
    kiosk = await request.app[KIOSKS].check_secret(request.match_info["kiosk_id"], body.secret)
    issued = request.app[TOKENS].issue(
        sub=kiosk.kiosk_id,
        role=Role.KIOSK,
        ttl=request.app[SETTINGS].hotline.kiosk_token_ttl_seconds,
    )
    reply = KioskTokenReply(
        token=issued.token, token_id=issued.token_id, expires_at=issued.expires_at
    )
    return _json(reply, 201)


@routes.post(f"/api/kiosks/{_ID}/disable")
async def disable_kiosk(request: web.Request) -> web.Response:
    """An admin disables a kiosk: its open call ends, its socket closes, its secret is refused."""
    principal = await require_principal(request)
    kiosk = await request.app[KIOSKS].set_enabled(
        principal, request.match_info["kiosk_id"], enabled=False
    )
    ended = await request.app[HOTLINE].kiosk_disabled(kiosk.kiosk_id)
    return _json(
        {
            "kiosk": kiosk_view(kiosk),
            "ended_call": None if ended is None else call_view(ended, as_kiosk=False),
        }
    )


@routes.post(f"/api/kiosks/{_ID}/enable")
async def enable_kiosk(request: web.Request) -> web.Response:
    """An admin enables a disabled kiosk again."""
    principal = await require_principal(request)
    kiosk = await request.app[KIOSKS].set_enabled(
        principal, request.match_info["kiosk_id"], enabled=True
    )
    return _json({"kiosk": kiosk_view(kiosk)})


@routes.put("/api/hotline/pharmacists/{sub}")
async def set_skills(request: web.Request) -> web.Response:
    """An admin sets a pharmacist's skills (languages, state licences)."""
    principal = await require_principal(request)
    sub = request.match_info["sub"]
    if not _OPAQUE.match(sub):
        raise NotFound("no such pharmacist")
    body = parse_json(SkillsRequest, await request.read())
    await request.app[HOTLINE].set_skills(principal, sub, body.skills)
    return _json({"sub": sub, "skills": sorted(set(body.skills))})


@routes.get("/api/hotline/stats")
async def stats(request: web.Request) -> web.Response:
    """Service-level figures (ASA, abandonment, service level, queue, pharmacists by state)."""
    principal = await require_principal(request)
    return _json(await request.app[HOTLINE].stats(principal))


@routes.get("/api/hotline/calls")
async def list_calls(request: web.Request) -> web.Response:
    """Records of the calls placed since `since` (Unix seconds), oldest first, for admins."""
    principal = await require_principal(request)
    try:
        since = float(request.query.get("since", "0"))
        limit = int(request.query.get("limit", "100"))
    except ValueError:
        raise InvalidPayload("since must be a number and limit an integer") from None
    if not 1 <= limit <= 1000:
        raise InvalidPayload("limit must be within 1..1000")
    calls = await request.app[HOTLINE].recent_calls(principal, since, limit)
    return _json({"calls": [call_view(c, as_kiosk=False) for c in calls]})


@routes.get("/api/hotline/calls/{call_id}")
async def call_record(request: web.Request) -> web.Response:
    """One call's record and its audit trail (every offer, accept, end, with times)."""
    principal = await require_principal(request)
    call_id = request.match_info["call_id"]
    if not _OPAQUE.match(call_id):
        raise NotFound("no such call", code="hotline.call_not_found")
    call = await request.app[HOTLINE].call_record(principal, call_id)
    events = await request.app[STORAGE].audit.list(call_id, limit=1000)
    return _json(
        CallRecordView(
            call=call_view(call, as_kiosk=False),
            offers=call.offers,
            events=[audit_event_view(e) for e in events],
        )
    )
