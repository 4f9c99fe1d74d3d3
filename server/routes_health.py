"""Liveness, readiness and metrics endpoints for orchestrators and Prometheus."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from careline.server import __version__
from careline.server.app_keys import METRICS, STORAGE
from careline.signaling.errors import StoreUnavailable

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process serves requests."""
    return web.json_response({"status": "ok", "version": __version__})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """Readiness: the storage backend answers a round trip."""
    storage = request.app[STORAGE]
    try:
        await storage.ping()
    except StoreUnavailable as exc:
        return web.json_response(
            {
                "status": "unavailable",
                "store": storage.backend,
                "error": {"code": exc.code, "message": exc.message},
            },
            status=503,
        )
    return web.json_response({"status": "ready", "store": storage.backend})


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition."""
    body = request.app[METRICS].render()
    response = web.Response(body=body)
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response
