"""Wires the pharmacist hotline into the application: service, namespace, metrics, lifecycle."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable

import socketio
from aiohttp import web

from careline.server.app_keys import HOTLINE, HOTLINE_BUS, KIOSKS
from careline.server.datadir import order_secret
from careline.server.hotline_metrics import HotlineMetrics
from careline.server.media_gateway import SfuGateway
from careline.server.metrics import Metrics
from careline.server.order_tokens import OrderTokens
from careline.server.settings import HotlineSettings, Settings
from careline.server.storage.redis_storage import RedisStorage
from careline.server.turn import ice_servers
from careline.signaling.hotline_cluster import HotlineCluster
from careline.signaling.hotline_config import HotlineConfig
from careline.signaling.hotline_namespace import HotlineNamespace
from careline.signaling.hotline_service import HotlineService
from careline.signaling.identity import Authenticator
from careline.signaling.kiosk_registry import KioskRegistry
from careline.signaling.media_router import MediaRouter
from careline.signaling.stores import Storage

log = logging.getLogger(__name__)


def hotline_config(settings: HotlineSettings) -> HotlineConfig:
    """The service's configuration from the `[hotline]` settings."""
    return HotlineConfig(
        ring_timeout_seconds=settings.ring_timeout_seconds,
        wrap_up_seconds=settings.wrap_up_seconds,
        skill_fallback_seconds=settings.skill_fallback_seconds,
        callback_after_seconds=settings.callback_after_seconds,
        service_level_seconds=settings.service_level_seconds,
        position_update_seconds=settings.position_update_seconds,
        reconnect_grace_seconds=settings.reconnect_grace_seconds,
        default_handle_seconds=settings.default_handle_seconds,
        stats_window_seconds=settings.stats_window_seconds,
        sweep_seconds=settings.sweep_seconds,
        node_lease_seconds=settings.node_lease_seconds,
        max_queue=settings.max_queue,
        video_codec=settings.video_codec,
    )


def order_tokens(settings: Settings, clock: Callable[[], float]) -> OrderTokens:
    """Signs and checks order tokens with the order key (configured, or in the data dir)."""
    return OrderTokens(
        order_secret(settings),
        issuer=settings.auth.issuer,
        audience=settings.auth.audience,
        leeway=settings.auth.leeway_seconds,
        clock=clock,
    )


def add_hotline(
    app: web.Application,
    sio: socketio.AsyncServer,
    *,
    settings: Settings,
    storage: Storage,
    gateway: SfuGateway,
    router: MediaRouter,
    authenticator: Authenticator,
    metrics: Metrics,
    clock: Callable[[], float],
    grace: float,
    node_id: str | None = None,
) -> None:
    """Build the hotline service and the /hotline namespace.

    With the Redis backend the service gets a HotlineCluster: global dispatch in Redis and a
    node bus (Redis pub/sub) so that changes reach sockets held by other nodes at once.

    Add `hotline_ctx` to the app's cleanup contexts after the storage and media ones, so the
    hotline starts once the store is open and its media sessions close before the SFU does.
    """
    kiosks = app[KIOSKS] = KioskRegistry(storage.hotline, clock)
    cluster: HotlineCluster | None = None
    if isinstance(storage, RedisStorage):
        bus = app[HOTLINE_BUS] = storage.hotline_bus()
        cluster = HotlineCluster(dispatch=storage.hotline_dispatch, bus=bus, nodes=storage.nodes)
    service = app[HOTLINE] = HotlineService(
        storage.hotline,
        storage.audit,
        kiosks,
        order_tokens(settings, clock),
        gateway,
        router,
        hotline_config(settings.hotline),
        ice_servers=lambda sub: ice_servers(settings.media, sub, clock()),
        clock=clock,
        observer=HotlineMetrics(metrics.registry),
        cluster=cluster,
        node_id=node_id,
    )
    sio.register_namespace(HotlineNamespace(service, authenticator, metrics, clock, grace))


async def hotline_ctx(app: web.Application) -> AsyncIterator[None]:
    """The sweep/dispatch task (and, with Redis, the node bus) run while the store is open;
    they and the hotline's media stop first."""
    service = app[HOTLINE]
    bus = app.get(HOTLINE_BUS)
    if bus is not None:
        await bus.start(service.node, service.notice)
    service.start()
    log.info("hotline node %s started", service.node)
    try:
        yield
    finally:
        await service.close()
        if bus is not None:
            await bus.close()
