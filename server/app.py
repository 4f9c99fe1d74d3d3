"""Builds the aiohttp application: routes, the socket.io server and every resource's lifecycle."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aiohttp import web

from careline.media.ice import restrict_host_addresses
from careline.server.app_keys import (
    AUTHENTICATOR,
    MEDIA,
    MEDIA_ROUTER,
    METRICS,
    SETTINGS,
    SIO,
    STORAGE,
    THREADS,
    TOKENS,
    VISITS,
)
from careline.server.auth import JwtAuthenticator
from careline.server.cluster_node import new_node_id
from careline.server.cluster_wiring import add_cluster_node, cluster_ctx, relay_threads
from careline.server.datadir import auth_secret, prepare_data_dir, public_key
from careline.server.errors import StartupError
from careline.server.hotline_wiring import add_hotline, hotline_ctx
from careline.server.http_edge import edge_middleware
from careline.server.media_gateway import SfuGateway
from careline.server.media_metrics import MediaCollector
from careline.server.metrics import Metrics
from careline.server.routes_cluster import routes as cluster_routes
from careline.server.routes_health import routes as health_routes
from careline.server.routes_hotline import routes as hotline_routes
from careline.server.routes_threads import routes as thread_routes
from careline.server.routes_tokens import routes as token_routes
from careline.server.routes_visits import routes as visit_routes
from careline.server.routes_web import add_web_routes
from careline.server.session_recorder import SessionRecorder, recorder_ctx
from careline.server.settings import Settings, ThreadSettings
from careline.server.socket_server import SocketServer
from careline.server.storage.factory import make_storage
from careline.server.storage.redis_storage import RedisStorage
from careline.server.tokens import TokenIssuer
from careline.server.turn import ice_servers
from careline.signaling.errors import StoreUnavailable
from careline.signaling.media_router import MediaRouter
from careline.signaling.session_namespace import SessionNamespace
from careline.signaling.socket_edge import EdgeNamespace
from careline.signaling.thread_namespace import ThreadNamespace
from careline.signaling.thread_service import ThreadLimits, ThreadService
from careline.signaling.visit_namespace import VisitNamespace
from careline.signaling.visit_service import VisitService

log = logging.getLogger(__name__)


def create_app(settings: Settings, clock: Callable[[], float] = time.time) -> web.Application:
    """The whole Careline application. Resources open on startup and close on cleanup.

    Raises StartupError when the data dir or the auth keys cannot be used.
    """
    prepare_data_dir(settings.data_path)
    secret = auth_secret(settings)
    app = web.Application(
        middlewares=[edge_middleware], client_max_size=settings.server.max_body_bytes
    )
    app[SETTINGS] = settings
    metrics = app[METRICS] = Metrics()
    storage = app[STORAGE] = make_storage(settings)
    authenticator = app[AUTHENTICATOR] = JwtAuthenticator(
        secret,
        issuer=settings.auth.issuer,
        audience=settings.auth.audience,
        leeway=settings.auth.leeway_seconds,
        revocations=storage.revocations,
        public_key=public_key(settings),
        clock=clock,
    )
    app[TOKENS] = TokenIssuer(
        secret,
        issuer=settings.auth.issuer,
        audience=settings.auth.audience,
        default_ttl=settings.auth.default_ttl_seconds,
        max_ttl=settings.auth.max_ttl_seconds,
        clock=clock,
    )
    sio = app[SIO] = SocketServer(
        max_http_buffer_size=settings.server.max_body_bytes,
        allowed_origins=settings.cluster.allowed_origins,
    )
    grace = settings.auth.leeway_seconds
    sio.register_namespace(SessionNamespace(authenticator, metrics, clock, grace))

    if settings.media.host_addresses:
        restrict_host_addresses(settings.media.host_addresses)
    gateway = app[MEDIA] = SfuGateway(settings.media)
    # One identity per process: the registry's node id is also the hotline's.
    node_id = new_node_id()
    cluster = (
        add_cluster_node(app, storage, settings, node_id, clock)
        if isinstance(storage, RedisStorage)
        else None
    )
    visits = app[VISITS] = VisitService(
        storage.visits,
        storage.audit,
        storage.revocations,
        gateway,
        grace_seconds=settings.visits.reconnect_grace_seconds,
        revoke_seconds=settings.auth.max_ttl_seconds,
        ice_servers=lambda sub: ice_servers(settings.media, sub, clock()),
        clock=clock,
        max_participants=settings.visits.max_participants,
        quality_interval=settings.visits.quality_interval_seconds,
        placement=None if cluster is None else cluster[1],
    )
    metrics.registry.register(MediaCollector(gateway, visits))
    router = app[MEDIA_ROUTER] = MediaRouter(fallback=visits)
    gateway.bind(router)
    sio.register_namespace(VisitNamespace(visits, authenticator, metrics, clock, grace))
    threads = app[THREADS] = ThreadService(
        storage.threads,
        storage.blobs,
        storage.audit,
        thread_limits(settings.threads),
        clock=clock,
        observer=metrics,
    )
    thread_namespace = ThreadNamespace(threads, authenticator, metrics, clock, grace)
    sio.register_namespace(thread_namespace)
    if cluster is not None and isinstance(storage, RedisStorage):
        relay_threads(app, storage, cluster[0], threads, thread_namespace, metrics)
    add_hotline(
        app,
        sio,
        settings=settings,
        storage=storage,
        gateway=gateway,
        router=router,
        authenticator=authenticator,
        metrics=metrics,
        clock=clock,
        grace=grace,
        node_id=node_id,
    )
    if settings.server.record_sessions_dir:
        recorder = SessionRecorder(Path(settings.server.record_sessions_dir))
        for namespace in sio.namespace_handlers.values():
            if isinstance(namespace, EdgeNamespace):
                namespace.event_tap = recorder
        app.cleanup_ctx.append(recorder_ctx(recorder))
    sio.attach(app, socketio_path="socket.io")

    app.router.add_routes(health_routes)
    app.router.add_routes(token_routes)
    app.router.add_routes(visit_routes)
    app.router.add_routes(thread_routes)
    app.router.add_routes(hotline_routes)
    app.router.add_routes(cluster_routes)
    add_web_routes(app)

    app.cleanup_ctx.append(_storage_ctx)
    app.cleanup_ctx.append(_media_ctx)
    app.cleanup_ctx.append(_threads_ctx)
    app.cleanup_ctx.append(hotline_ctx)
    app.cleanup_ctx.append(cluster_ctx)
    app.on_shutdown.append(_close_sockets)
    return app


async def _storage_ctx(app: web.Application) -> AsyncIterator[None]:
    storage = app[STORAGE]
    try:
        await storage.open()
    except StoreUnavailable as exc:
        await storage.close()
        raise StartupError(
            f"storage backend {storage.backend} unavailable: {exc.message}"
        ) from None
    log.info("storage backend %s open", storage.backend)
    try:
        yield
    finally:
        await storage.close()


async def _media_ctx(app: web.Application) -> AsyncIterator[None]:
    """Visits and media live within the store's lifetime.

    The visit quality loop starts once the store is open; it, the visit timers and every peer
    connection end before the store closes.
    """
    app[VISITS].start()
    try:
        yield
    finally:
        await app[VISITS].close()
        await app[MEDIA].close()


async def _threads_ctx(app: web.Application) -> AsyncIterator[None]:
    """The retention task runs while the store is open and stops before it closes."""
    app[THREADS].start()
    try:
        yield
    finally:
        await app[THREADS].close()


def thread_limits(settings: ThreadSettings) -> ThreadLimits:
    """The service's limits from the `[threads]` settings."""
    return ThreadLimits(
        max_text_bytes=settings.max_text_bytes,
        max_attachment_bytes=settings.max_attachment_bytes,
        max_attachments=settings.max_attachments_per_message,
        reopen_window_seconds=settings.reopen_window_seconds,
        retention_seconds=settings.retention_days * 86_400 if settings.retention_days else None,
        orphan_attachment_seconds=settings.orphan_attachment_seconds,
        purge_interval_seconds=settings.purge_interval_seconds,
        send_rate_per_second=settings.send_rate_per_second,
        send_burst=settings.send_burst,
        typing_rate_per_second=settings.typing_rate_per_second,
        typing_burst=settings.typing_burst,
    )


async def _close_sockets(app: web.Application) -> None:
    """Disconnect every socket.io client (within half the shutdown deadline)."""
    sio = app[SIO]
    deadline = app[SETTINGS].server.shutdown_timeout_seconds / 2
    if sio.eio.sockets:  # engine.io's disconnect-all fails on an empty set
        try:
            async with asyncio.timeout(deadline):
                await sio.eio.disconnect()
        except TimeoutError:
            # A long-polling client with no request in flight never takes its close packet.
            log.warning("socket.io clients did not close within %.1f s", deadline)
    for namespace in sio.namespace_handlers.values():
        if isinstance(namespace, EdgeNamespace):
            await namespace.close()
    await sio.cancel_events()
    await sio.shutdown()
