"""Typed aiohttp application state (AppKeys): one key per shared object of the process."""

from __future__ import annotations

import socketio
from aiohttp import web

from careline.server.auth import JwtAuthenticator
from careline.server.cluster_node import ClusterNode
from careline.server.media_gateway import SfuGateway
from careline.server.metrics import Metrics
from careline.server.settings import Settings
from careline.server.storage.redis_hotline_bus import RedisHotlineBus
from careline.server.storage.redis_room_bus import RedisRoomBus
from careline.server.tokens import TokenIssuer
from careline.signaling.hotline_service import HotlineService
from careline.signaling.kiosk_registry import KioskRegistry
from careline.signaling.media_router import MediaRouter
from careline.signaling.room_relay import RelayedChannel
from careline.signaling.stores import Storage
from careline.signaling.thread_service import ThreadService
from careline.signaling.visit_service import VisitService

SETTINGS = web.AppKey("settings", Settings)
METRICS = web.AppKey("metrics", Metrics)
STORAGE = web.AppKey("storage", Storage)
AUTHENTICATOR = web.AppKey("authenticator", JwtAuthenticator)
TOKENS = web.AppKey("tokens", TokenIssuer)
SIO = web.AppKey("sio", socketio.AsyncServer)
MEDIA = web.AppKey("media", SfuGateway)
MEDIA_ROUTER = web.AppKey("media_router", MediaRouter)
VISITS = web.AppKey("visits", VisitService)
THREADS = web.AppKey("threads", ThreadService)
HOTLINE = web.AppKey("hotline", HotlineService)
KIOSKS = web.AppKey("kiosks", KioskRegistry)
#: Only with the Redis backend: notices between hotline nodes.
HOTLINE_BUS = web.AppKey("hotline_bus", RedisHotlineBus)
#: Only with the Redis backend: this process as a node of the deployment (registry heartbeat).
CLUSTER = web.AppKey("cluster", ClusterNode)
#: Only with the Redis backend: message-visit pushes between nodes.
ROOM_BUS = web.AppKey("room_bus", RedisRoomBus)
RELAYED_CHANNEL = web.AppKey("relayed_channel", RelayedChannel)
