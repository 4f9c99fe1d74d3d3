"""NodeRegistry on Redis: a lease per node in a sorted set beside its msgpack record.

A heartbeat writes both in one Lua script and drops nodes whose lease ended long ago, so the
registry does not grow with every process ever started; `live` reads only leases that run past
now. A heartbeat also clears the node's count of visits placed on it since the previous one
(its record now carries its load); `live` adds the count still pending to each node's load.
Times are the nodes' clocks (Unix seconds): nodes must keep them in sync (NTP), as for the
hotline's leases.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
import redis.asyncio as aioredis

from careline.server.storage.redis_cluster_keys import ClusterKeys
from careline.server.storage.redis_errors import redis_unavailable
from careline.signaling.node_registry import NodeInfo

#: A dead node's record is kept this long after its lease ended (for `live` it is gone at once).
FORGET_AFTER_SECONDS = 3600.0

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(NodeInfo)

# KEYS: leases, nodes, placed counts. ARGV: node id, lease end, record, forget-before.
_HEARTBEAT = """
local stale = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[4])
for _, node in ipairs(stale) do
  redis.call('HDEL', KEYS[2], node)
  redis.call('HDEL', KEYS[3], node)
end
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[4])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
return 1
"""


class RedisNodeRegistry:
    """The registry of every node on one Redis (StoreUnavailable when Redis is not answering)."""

    def __init__(self, client: aioredis.Redis, keys: ClusterKeys) -> None:
        self._client = client
        self._keys = keys
        self._heartbeat = client.register_script(_HEARTBEAT)

    async def heartbeat(self, info: NodeInfo) -> None:
        """Store `info`; the node is alive until `info.lease_until`."""
        async with redis_unavailable():
            await self._heartbeat(
                keys=[self._keys.leases, self._keys.nodes, self._keys.placed],
                args=[
                    info.node_id,
                    repr(info.lease_until),
                    _encoder.encode(info),
                    repr(info.lease_until - FORGET_AFTER_SECONDS),
                ],
            )

    async def live(self, now: float) -> Sequence[NodeInfo]:
        """Nodes whose lease runs past `now`, by node id."""
        async with redis_unavailable():
            ids = await self._client.zrangebyscore(self._keys.leases, f"({now!r}", "+inf")
            if not ids:
                return []
            keys = [_bytes(i) for i in ids]
            records = await self._client.hmget(self._keys.nodes, keys)
            placed = await self._client.hmget(self._keys.placed, keys)
        found = [
            _with_placed(_decoder.decode(_bytes(record)), count)
            for record, count in zip(records, placed, strict=True)
            if record is not None
        ]
        return sorted(found, key=lambda n: n.node_id)

    async def leave(self, node_id: str) -> None:
        """Remove a node's lease and record (a clean shutdown)."""
        async with redis_unavailable():
            pipe = self._client.pipeline(transaction=True)
            pipe.zrem(self._keys.leases, node_id)
            pipe.hdel(self._keys.nodes, node_id)
            pipe.hdel(self._keys.placed, node_id)
            await pipe.execute()


def _with_placed(info: NodeInfo, count: object) -> NodeInfo:
    """`info` with the visits placed on it since its heartbeat (a Redis integer reply or nil)."""
    placed = int(_bytes(count)) if count is not None else 0
    if placed == info.load.placed_since_heartbeat:
        return info
    load = msgspec.structs.replace(info.load, placed_since_heartbeat=placed)
    return msgspec.structs.replace(info, load=load)


def _bytes(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    raise TypeError(f"unexpected Redis reply {type(value).__name__}")
