"""The HTTP edge: maps every error to `{"error": {"code", "message"}}` once, and counts requests."""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web
from aiohttp.typedefs import Handler

from careline.server.app_keys import AUTHENTICATOR, METRICS
from careline.signaling.errors import (
    AuthError,
    Conflict,
    Forbidden,
    InvalidPayload,
    NotFound,
    RateLimited,
    SignalingError,
    StoreUnavailable,
    TooLarge,
    UnknownEvent,
    UnsupportedMedia,
)
from careline.signaling.identity import Principal

log = logging.getLogger(__name__)

_STATUS: dict[type[SignalingError], int] = {
    InvalidPayload: 400,
    UnknownEvent: 400,
    AuthError: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    RateLimited: 429,
    TooLarge: 413,
    UnsupportedMedia: 415,
    StoreUnavailable: 503,
}
_HTTP_CODES = {
    400: "bad_request",
    401: "auth.missing",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def status_of(exc: SignalingError) -> int:
    """The HTTP status of a domain error (500 for anything unmapped)."""
    for cls in type(exc).__mro__:
        if cls in _STATUS:
            return _STATUS[cls]
    return 500


def json_error(status: int, code: str, message: str) -> web.Response:
    """The one error body shape of the HTTP API."""
    response = web.json_response({"error": {"code": code, "message": message}}, status=status)
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="careline"'
    return response


@web.middleware
async def edge_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn raised errors into JSON error bodies and record per-route metrics."""
    started = time.perf_counter()
    try:
        response = await handler(request)
    except SignalingError as exc:
        if isinstance(exc, AuthError):
            request.app[METRICS].auth_failures.labels(exc.code).inc()
        response = json_error(status_of(exc), exc.code, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, f"http_{exc.status}")
        response = json_error(exc.status, code, exc.reason)
        for name in ("Allow", "Location"):
            if name in exc.headers:
                response.headers[name] = exc.headers[name]
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("unhandled error in %s %s", request.method, _route(request))
        response = json_error(500, "internal", "internal error")
    route = _route(request)
    metrics = request.app[METRICS]
    metrics.http_requests.labels(route, request.method, str(response.status)).inc()
    metrics.http_seconds.labels(route).observe(time.perf_counter() - started)
    return response


def _route(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


async def require_principal(request: web.Request) -> Principal:
    """Authenticate the request's `Authorization: Bearer` token (the one HTTP auth check)."""
    header = request.headers.get("Authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else None
    return await request.app[AUTHENTICATOR].authenticate(token)
