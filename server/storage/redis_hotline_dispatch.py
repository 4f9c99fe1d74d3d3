"""Global hotline dispatch on Redis: one Lua script routes queued calls across every node.

The script implements `SharedDispatch`: the rules of `hotline_routing.route` and the move of
`hotline_moves.offer`, over the indexes `RedisHotlineStore.apply` keeps (`queue_requeued` then
`queue` by enqueue time; `available` by idle-since, so the globally longest-idle pharmacist
comes first). A pharmacist counts only while the lease of the node holding their console
(`nodes`, renewed by that node's sweep every `node_lease_seconds / 3`) runs past `now`: when a
node dies its pharmacists stop being rung at once, and the next sweep on any node sets them
offline. Reading, choosing and writing happen in one script, so two nodes never offer one call
or one pharmacist twice.

The records are msgpack maps (hotline_codec); the script decodes them with `cmsgpack`, changes
the fields `offer` changes, and encodes them again (absent fields decode to their defaults).
tests/storage/test_hotline_store_contract.py checks the records it writes against `offer`.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio as aioredis

from careline.server.storage.hotline_codec import unpack_call, unpack_presence
from careline.server.storage.redis_errors import redis_unavailable
from careline.server.storage.redis_hotline_keys import HotlineKeys
from careline.signaling.hotline_cluster import Offered
from careline.signaling.hotline_store import HotlineChange

# KEYS: calls, call_versions, presence, presence_versions, queue, queue_requeued, available,
#       nodes.
# ARGV: now, ring_seconds, fallback_seconds, limit.
# Returns, per offer: the call's record before, the call's record after, the presence after.
_DISPATCH = """
local now, ring = tonumber(ARGV[1]), tonumber(ARGV[2])
local fallback, limit = tonumber(ARGV[3]), tonumber(ARGV[4])
local subs = redis.call('ZRANGE', KEYS[7], 0, -1)
if #subs == 0 then return {} end
local free, alive = {}, {}
for _, sub in ipairs(subs) do
  local raw = redis.call('HGET', KEYS[3], sub)
  if raw then
    local presence = cmsgpack.unpack(raw)
    if presence.state == 'available' then
      local live = alive[presence.node]
      if live == nil then
        local lease = redis.call('ZSCORE', KEYS[8], presence.node)
        live = lease ~= false and tonumber(lease) > now
        alive[presence.node] = live
      end
      if live then
        local skills = {}
        for _, skill in ipairs(presence.skills or {}) do skills[skill] = true end
        free[#free + 1] = {sub = sub, record = presence, skills = skills}
      end
    end
  end
end
local function can_serve(pharmacist, call)
  for _, skill in ipairs(call.skills or {}) do
    if not pharmacist.skills[skill] then return now - call.enqueued_at >= fallback end
  end
  return true
end
local offered, count = {}, 0
for _, queue in ipairs({KEYS[6], KEYS[5]}) do
  local ids = {}
  if #free > 0 and count < limit then ids = redis.call('ZRANGE', queue, 0, -1) end
  for _, id in ipairs(ids) do
    if #free == 0 or count >= limit then break end
    local raw = redis.call('HGET', KEYS[1], id)
    local call = raw and cmsgpack.unpack(raw)
    if call and call.state == 'queued' then
      local chosen, passed = nil, nil
      for index, pharmacist in ipairs(free) do
        if can_serve(pharmacist, call) then
          if pharmacist.sub ~= call.passed_by then chosen = index break end
          if passed == nil then passed = index end
        end
      end
      chosen = chosen or passed
      if chosen then
        local pharmacist = table.remove(free, chosen)
        call.state = 'ringing'
        call.version = call.version + 1
        call.pharmacist = pharmacist.sub
        call.offers = (call.offers or 0) + 1
        if call.offered_at == nil then call.offered_at = now end
        call.ring_deadline = now + ring
        local presence = pharmacist.record
        presence.state = 'ringing'
        presence.version = presence.version + 1
        presence.since = now
        presence.call_id = id
        presence.wrap_until = nil
        presence.reason = nil
        local new_call, new_presence = cmsgpack.pack(call), cmsgpack.pack(presence)
        redis.call('HSET', KEYS[1], id, new_call)
        redis.call('HSET', KEYS[2], id, string.format('%d', call.version))
        redis.call('HSET', KEYS[3], pharmacist.sub, new_presence)
        redis.call('HSET', KEYS[4], pharmacist.sub, string.format('%d', presence.version))
        redis.call('ZREM', queue, id)
        redis.call('ZREM', KEYS[7], pharmacist.sub)
        offered[#offered + 1] = raw
        offered[#offered + 1] = new_call
        offered[#offered + 1] = new_presence
        count = count + 1
      end
    end
  end
end
return offered
"""


class RedisHotlineDispatch:
    """SharedDispatch on Redis (see the module docstring)."""

    def __init__(self, client: aioredis.Redis, keys: HotlineKeys) -> None:
        self._keys = keys
        self._dispatch = client.register_script(_DISPATCH)

    async def dispatch(
        self, now: float, ring_seconds: float, fallback_seconds: float, limit: int
    ) -> Sequence[Offered]:
        """Offer queued calls to the longest-idle live pharmacists; what was stored."""
        keys = self._keys
        async with redis_unavailable():
            found = await self._dispatch(
                keys=[
                    keys.calls,
                    keys.call_versions,
                    keys.presence,
                    keys.presence_versions,
                    keys.queue,
                    keys.queue_requeued,
                    keys.available,
                    keys.nodes,
                ],
                args=[repr(now), repr(ring_seconds), repr(fallback_seconds), limit],
            )
        offered: list[Offered] = []
        for index in range(0, len(found), 3):
            before, call, presence = found[index : index + 3]
            change = HotlineChange(
                calls=(unpack_call(call),), presences=(unpack_presence(presence),)
            )
            offered.append(Offered(before=unpack_call(before), change=change))
        return offered
