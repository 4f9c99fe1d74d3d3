"""The Redis backend: every store on one Redis (the scale-out backend)."""

from __future__ import annotations

import logging

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from careline.server.storage.redis_audit import RedisAuditStore
from careline.server.storage.redis_blobs import RedisBlobStore
from careline.server.storage.redis_cluster_keys import ClusterKeys
from careline.server.storage.redis_errors import redis_unavailable
from careline.server.storage.redis_hotline import RedisHotlineStore
from careline.server.storage.redis_hotline_bus import RedisHotlineBus
from careline.server.storage.redis_hotline_dispatch import RedisHotlineDispatch
from careline.server.storage.redis_hotline_keys import HotlineKeys
from careline.server.storage.redis_node_registry import RedisNodeRegistry
from careline.server.storage.redis_revocations import RedisRevocationStore
from careline.server.storage.redis_room_bus import RedisRoomBus
from careline.server.storage.redis_threads import RedisThreadStore
from careline.server.storage.redis_visit_placement import RedisVisitPlacement
from careline.server.storage.redis_visits import RedisVisitStore
from careline.server.storage.reply_text import text

log = logging.getLogger(__name__)

#: Longest wait for one command's reply. Redis answers in milliseconds; a server that does not
#: answer within this (stopped, partitioned) fails the request with StoreUnavailable instead of
#: holding it. Timeouts are not retried (the command may have run).
COMMAND_TIMEOUT_SECONDS = 2.0
#: Longest wait for a new connection.
CONNECT_TIMEOUT_SECONDS = 1.0
#: Refused or dropped connections are retried this often (about 0.7 s of backoff in all): a
#: restarted Redis leaves every pooled connection stale, and each is reopened on its next use.
CONNECTION_RETRIES = 3


class RedisStorage:
    """Storage on Redis. Commands retry refused or dropped connections with capped backoff and
    give up on a silent server after COMMAND_TIMEOUT_SECONDS (StoreUnavailable either way)."""

    backend = "redis"

    def __init__(self, url: str, prefix: str) -> None:
        self._client: aioredis.Redis = aioredis.Redis.from_url(
            url,
            retry=Retry(
                ExponentialBackoff(cap=1.0, base=0.05),
                retries=CONNECTION_RETRIES,
                supported_errors=(RedisConnectionError,),
            ),
            socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
            socket_timeout=COMMAND_TIMEOUT_SECONDS,
        )
        self._audit = RedisAuditStore(self._client, prefix)
        self._revocations = RedisRevocationStore(self._client, prefix)
        self._visits = RedisVisitStore(self._client, prefix)
        self._threads = RedisThreadStore(self._client, prefix)
        self._blobs = RedisBlobStore(self._client, prefix)
        self._hotline_keys = HotlineKeys.under(prefix)
        self._hotline = RedisHotlineStore(self._client, self._hotline_keys)
        self._hotline_dispatch = RedisHotlineDispatch(self._client, self._hotline_keys)
        self._cluster_keys = ClusterKeys.under(prefix)
        self._nodes = RedisNodeRegistry(self._client, self._cluster_keys)
        self._placement = RedisVisitPlacement(self._client, self._cluster_keys)
        self._closed = False
        self.aof_always: bool | None = None

    @property
    def client(self) -> aioredis.Redis:
        """The shared client (for stores added by later steps)."""
        return self._client

    @property
    def audit(self) -> RedisAuditStore:
        return self._audit

    @property
    def revocations(self) -> RedisRevocationStore:
        return self._revocations

    @property
    def visits(self) -> RedisVisitStore:
        return self._visits

    @property
    def threads(self) -> RedisThreadStore:
        return self._threads

    @property
    def blobs(self) -> RedisBlobStore:
        return self._blobs

    @property
    def hotline(self) -> RedisHotlineStore:
        return self._hotline

    @property
    def hotline_dispatch(self) -> RedisHotlineDispatch:
        """Global dispatch of hotline calls across every node on this Redis."""
        return self._hotline_dispatch

    def hotline_bus(self) -> RedisHotlineBus:
        """A new node bus for the hotline (its subscription holds a connection of its own)."""
        return RedisHotlineBus(self._client, self._hotline_keys)

    @property
    def nodes(self) -> RedisNodeRegistry:
        """The registry of every node on this Redis (heartbeats, load)."""
        return self._nodes

    @property
    def visit_placement(self) -> RedisVisitPlacement:
        """Which node holds each visit's media."""
        return self._placement

    def room_bus(self) -> RedisRoomBus:
        """A new relay of room pushes between nodes (its subscription holds a connection)."""
        return RedisRoomBus(self._client, self._cluster_keys)

    async def open(self) -> None:
        """Check that Redis answers (StoreUnavailable otherwise) and how durable its writes are."""
        await self.ping()
        await self._check_durability()
        await self._hotline.reindex()

    async def _check_durability(self) -> None:
        """Warn unless every write is fsynced to the AOF before Redis answers it.

        Only then is a message acknowledged after a Redis reply durable (appendonly yes,
        appendfsync always). CONFIG may be disabled on managed Redis: then nothing is known.
        """
        try:
            async with redis_unavailable():
                found = await self._client.config_get("append*")
        except ResponseError:
            log.warning("cannot read the Redis AOF settings; durability is unknown")
            return
        values = {text(k): text(v) for k, v in found.items()}
        self.aof_always = (
            values.get("appendonly") == "yes" and values.get("appendfsync") == "always"
        )
        if not self.aof_always:
            log.warning(
                "Redis runs with appendonly=%s appendfsync=%s: acknowledged messages may be lost "
                "in a crash (set appendonly yes and appendfsync always)",
                values.get("appendonly"),
                values.get("appendfsync"),
            )

    async def ping(self) -> None:
        async with redis_unavailable():
            await self._client.ping()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._client.aclose()
