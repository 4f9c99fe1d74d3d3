"""Token endpoints: who am I, and admin minting and revocation of tokens."""

from __future__ import annotations

import time

import msgspec
from aiohttp import web

from careline.server.app_keys import SETTINGS, SIO, STORAGE, TOKENS
from careline.server.http_edge import require_principal
from careline.signaling.errors import Forbidden, InvalidPayload
from careline.signaling.identity import (
    Principal,
    Role,
    subject_revocation_key,
    token_revocation_key,
)
from careline.signaling.schemas import RevokeRequest, TokenReply, TokenRequest, WhoAmI, parse_json
from careline.signaling.socket_edge import EdgeNamespace

routes = web.RouteTableDef()


def _json(value: object, status: int = 200) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(value), status=status, content_type="application/json"
    )


def _require_admin(principal: Principal) -> None:
    if principal.role is not Role.ADMIN:
        raise Forbidden("only an admin may do this")


@routes.get("/api/session")
async def session(request: web.Request) -> web.Response:
    """The caller's identity as the server sees it."""
    principal = await require_principal(request)
    return _json(
        WhoAmI(
            sub=principal.sub,
            role=principal.role,
            expires_at=principal.expires_at,
            visit_id=principal.visit_id,
            thread_id=principal.thread_id,
        )
    )


@routes.post("/api/tokens")
async def mint(request: web.Request) -> web.Response:
    """An admin mints a token for an opaque subject (used by integrations and the load tester)."""
    _require_admin(await require_principal(request))
    body = parse_json(TokenRequest, await request.read())
    if body.visit_id is not None and body.thread_id is not None:
        raise InvalidPayload("a token is scoped to a visit or a thread, not both")
    max_ttl = request.app[SETTINGS].auth.max_ttl_seconds
    if body.ttl_seconds is not None and body.ttl_seconds > max_ttl:
        raise InvalidPayload(f"ttl_seconds must be at most {max_ttl}")
    issued = request.app[TOKENS].issue(
        sub=body.sub,
        role=body.role,
        visit_id=body.visit_id,
        thread_id=body.thread_id,
        ttl=body.ttl_seconds,
    )
    return _json(
        TokenReply(token=issued.token, token_id=issued.token_id, expires_at=issued.expires_at),
        status=201,
    )


@routes.post("/api/tokens/revoke")
async def revoke(request: web.Request) -> web.Response:
    """An admin revokes one token (token_id) or every token of a subject, optionally in a scope."""
    _require_admin(await require_principal(request))
    body = parse_json(RevokeRequest, await request.read())
    if (body.token_id is None) == (body.sub is None):
        raise InvalidPayload("give exactly one of token_id or sub")
    if body.token_id is not None and body.scope is not None:
        raise InvalidPayload("scope goes with sub, not with token_id")
    settings = request.app[SETTINGS]
    until = body.until if body.until is not None else time.time() + settings.auth.max_ttl_seconds
    if body.token_id is not None:
        key = token_revocation_key(body.token_id)
    else:
        assert body.sub is not None
        key = subject_revocation_key(body.sub, body.scope)
    await request.app[STORAGE].revocations.revoke(key, until)
    dropped = 0
    for namespace in request.app[SIO].namespace_handlers.values():
        if isinstance(namespace, EdgeNamespace):
            dropped += await namespace.drop_revoked([key])
    return _json({"revoked": True, "until": until, "disconnected": dropped})
