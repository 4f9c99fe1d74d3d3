"""PlacementStore on Redis: one key per visit naming its owner node, checked against the leases.

One Lua script reads the owner and its lease and, if the owner is missing or dead, records the
candidate: two nodes placing one visit at once agree on one owner. It also counts the visits
placed on each node since that node's last heartbeat (the registry adds them to the node's load
until its next heartbeat reports them), so visits started together do not all land on the node
that was least loaded at the last heartbeat. A placement expires a day
after the visit was last placed or joined (ended visits leave nothing behind for long).
"""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio as aioredis

from careline.server.storage.redis_cluster_keys import ClusterKeys
from careline.server.storage.redis_errors import redis_unavailable
from careline.server.storage.reply_text import text

#: A placement is forgotten this long after its visit was last joined.
PLACEMENT_TTL_SECONDS = 86_400

# KEYS: placement key, leases, placed counts. ARGV: candidate, now, ttl.
_PLACE = """
local owner = redis.call('GET', KEYS[1])
if owner then
  local lease = redis.call('ZSCORE', KEYS[2], owner)
  if lease and tonumber(lease) > tonumber(ARGV[2]) then
    redis.call('EXPIRE', KEYS[1], ARGV[3])
    return owner
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
redis.call('HINCRBY', KEYS[3], ARGV[1], 1)
return ARGV[1]
"""


class RedisVisitPlacement:
    """Where each visit's media lives (StoreUnavailable when Redis is not answering)."""

    def __init__(self, client: aioredis.Redis, keys: ClusterKeys) -> None:
        self._client = client
        self._keys = keys
        self._place = client.register_script(_PLACE)

    async def place(self, visit_id: str, candidate: str, now: float) -> str:
        """The live owner of `visit_id`, or `candidate` recorded as its new owner."""
        async with redis_unavailable():
            owner = await self._place(
                keys=[self._keys.placement + visit_id, self._keys.leases, self._keys.placed],
                args=[candidate, repr(now), PLACEMENT_TTL_SECONDS],
            )
        return text(owner)

    async def owners(self, visit_ids: Sequence[str]) -> dict[str, str | None]:
        """The recorded owner of each visit (None: no record), without placing anything."""
        if not visit_ids:
            return {}
        async with redis_unavailable():
            found = await self._client.mget([self._keys.placement + v for v in visit_ids])
        return {
            visit_id: None if owner is None else text(owner)
            for visit_id, owner in zip(visit_ids, found, strict=True)
        }
