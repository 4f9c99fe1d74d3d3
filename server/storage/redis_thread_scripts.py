"""Lua scripts of the Redis ThreadStore: each write is one script, so it is atomic.

Keys of thread T under prefix P: `P:thread:{T}` (hash of the thread's fields), `...:msgs`
(sorted set, score = seq, member = msgpack map of the entry), `...:ids` (hash client_msg_id ->
"fingerprint:seq", the idempotency keys), `...:reads` (hash sub -> read horizon), `...:atts`
(hash attachment id -> msgpack map). Indexes (sorted sets of thread ids): `P:threads:all`,
`P:threads:family:<sub>`, `P:threads:open`, `P:threads:assigned:<sub>` (score: last activity),
`P:threads:closed` (score: closed_at) and `P:threads:unsent` (members "T/attachment", score:
upload time). Index keys are built inside the scripts, so this store needs a single Redis (or a
primary with replicas), not Redis Cluster.

Every script checks everything before it writes anything: Redis does not roll a script back, so
a refusal must leave no trace. Times are passed both as numbers (kept exactly inside msgpack)
and as strings (for hash fields and scores: Lua would print numbers with 14 digits only).
"""

from __future__ import annotations

from careline.server.storage.thread_codec import THREAD_FIELDS

#: Lua arguments of an HMGET of a thread's fields, in THREAD_FIELDS order.
_THREAD_FIELDS = ", ".join(f"'{name}'" for name in THREAD_FIELDS)

# KEYS: thread, msgs, ids, reads. ARGV: prefix, packed thread map, packed first entry,
# fingerprint.
CREATE = """
local prefix = ARGV[1]
local t = cmsgpack.unpack(ARGV[2])
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.call('HMGET', KEYS[1], 'family_sub', 'patient_ref')
end
redis.call('HSET', KEYS[1], 'thread_id', t.thread_id, 'family_sub', t.family_sub,
  'patient_ref', t.patient_ref, 'state', t.state, 'created_by', t.created_by,
  'created_at', t.created_at_s, 'updated_at', t.created_at_s, 'last_seq', 1, 'version', t.version)
redis.call('ZADD', KEYS[2], 1, ARGV[3])
redis.call('HSET', KEYS[3], t.cmid, ARGV[4] .. ':1')
redis.call('HSET', KEYS[4], t.opener, 1)
redis.call('ZADD', prefix .. ':threads:all', t.created_at_s, t.thread_id)
redis.call('ZADD', prefix .. ':threads:family:' .. t.family_sub, t.created_at_s, t.thread_id)
redis.call('ZADD', prefix .. ':threads:open', t.created_at_s, t.thread_id)
return 1
"""

# KEYS: thread, msgs, ids, reads, atts. ARGV: prefix, packed request (see RedisThreadStore).
# Replies: {'DUP', seq} | {'ERR', reason, state, detail}
#   | {'OK', seq, entry, target, dropped, thread fields in THREAD_FIELDS order}.
APPEND = """
local prefix = ARGV[1]
local r = cmsgpack.unpack(ARGV[2])
local th = redis.call('HMGET', KEYS[1], 'state', 'family_sub', 'assigned_to', 'version',
  'last_seq', 'thread_id')
local state = th[1]
if not state then return {'ERR', 'NO_THREAD', '', false} end
local assigned = th[3] or ''
if r.family and th[2] ~= r.family then return {'ERR', 'NOT_FAMILY', state, false} end
if r.assignee and assigned ~= r.assignee then return {'ERR', 'NOT_ASSIGNEE', state, false} end
local prior = redis.call('HGET', KEYS[3], r.cmid)
if prior then
  local sep = string.find(prior, ':', 1, true)
  if string.sub(prior, 1, sep - 1) ~= r.fp then return {'ERR', 'MISMATCH', state, false} end
  return {'DUP', tonumber(string.sub(prior, sep + 1))}
end
if r.version and tonumber(th[4]) ~= r.version then return {'ERR', 'STALE', state, false} end
local allowed = false
for _, s in ipairs(r.allowed) do if s == state then allowed = true end end
if not allowed then return {'ERR', 'STATE', state, false} end
local seq = tonumber(th[5]) + 1
local bound = {}
local refs = {}
for i, aid in ipairs(r.att_ids) do
  local raw = redis.call('HGET', KEYS[5], aid)
  if not raw then return {'ERR', 'ATTACHMENT', state, false} end
  local a = cmsgpack.unpack(raw)
  if a.uploader ~= r.sender or a.seq then return {'ERR', 'ATTACHMENT', state, raw} end
  a.seq = seq
  bound[i] = a
  refs[i] = {aid, a.content_type, a.size}
end
local target = nil
if r.target and (r.kind == 'edit' or r.kind == 'delete') then
  local found = redis.call('ZRANGE', KEYS[2], r.target, r.target, 'BYSCORE')
  if #found == 0 then return {'ERR', 'TARGET', state, false} end
  target = cmsgpack.unpack(found[1])
  if target.kind ~= 'message' or target.sender ~= r.sender or target.deleted then
    return {'ERR', 'TARGET', state, found[1]}
  end
end
-- Every check passed: write.
local tid = th[6]
for i, a in ipairs(bound) do
  redis.call('HSET', KEYS[5], a.attachment_id, cmsgpack.pack(a))
  redis.call('ZREM', prefix .. ':threads:unsent', tid .. '/' .. a.attachment_id)
end
local dropped = {}
local packed_target = false
if target then
  target.version = target.version + 1
  target.edited_at = r.at
  if r.kind == 'delete' then
    target.deleted = true
    target.text = ''
    for _, ref in ipairs(target.att) do
      redis.call('HDEL', KEYS[5], ref[1])
      table.insert(dropped, ref[1])
    end
    target.att = {}
  else
    target.text = r.text
  end
  packed_target = cmsgpack.pack(target)
  redis.call('ZREMRANGEBYSCORE', KEYS[2], r.target, r.target)
  redis.call('ZADD', KEYS[2], r.target, packed_target)
end
local m = {seq = seq, kind = r.kind, sender = r.sender, role = r.role, cmid = r.cmid,
  at = r.at, fp = r.fp, att = refs, version = 1, deleted = false}
if r.text and not target then m.text = r.text end
if r.event then m.event = r.event end
if r.subject then m.subject = r.subject end
if r.target then m.target = r.target end
local entry = cmsgpack.pack(m)
redis.call('ZADD', KEYS[2], seq, entry)
redis.call('HSET', KEYS[3], r.cmid, r.fp .. ':' .. seq)
local new_state = r.moves[state] or state
local new_assigned = r.assign_to or assigned
local changed = new_state ~= state or new_assigned ~= assigned
local version = tonumber(th[4])
if changed then version = version + 1 end
redis.call('HSET', KEYS[1], 'state', new_state, 'updated_at', r.at_s, 'last_seq', seq,
  'version', version)
if new_assigned ~= '' then redis.call('HSET', KEYS[1], 'assigned_to', new_assigned) end
if new_state == 'closed' and changed then redis.call('HSET', KEYS[1], 'closed_at', r.at_s) end
local horizon = tonumber(redis.call('HGET', KEYS[4], r.sender) or '0')
if seq > horizon then redis.call('HSET', KEYS[4], r.sender, seq) end
redis.call('ZADD', prefix .. ':threads:all', r.at_s, tid)
redis.call('ZADD', prefix .. ':threads:family:' .. th[2], r.at_s, tid)
if new_state == 'open' then
  redis.call('ZADD', prefix .. ':threads:open', r.at_s, tid)
else
  redis.call('ZREM', prefix .. ':threads:open', tid)
end
if new_assigned ~= '' then
  redis.call('ZADD', prefix .. ':threads:assigned:' .. new_assigned, r.at_s, tid)
end
if assigned ~= '' and assigned ~= new_assigned then
  redis.call('ZREM', prefix .. ':threads:assigned:' .. assigned, tid)
end
if new_state == 'closed' then
  if changed then redis.call('ZADD', prefix .. ':threads:closed', r.at_s, tid) end
else
  redis.call('ZREM', prefix .. ':threads:closed', tid)
end
return {'OK', seq, entry, packed_target, dropped,
  redis.call('HMGET', KEYS[1], THREAD_FIELDS)}
""".replace("THREAD_FIELDS", _THREAD_FIELDS)

# KEYS: thread, reads. ARGV: sub, seq. Replies: horizon | {'NO_THREAD'} | {'RANGE', last_seq}.
MARK_READ = """
local last = redis.call('HGET', KEYS[1], 'last_seq')
if not last then return {'NO_THREAD'} end
local seq = tonumber(ARGV[2])
if seq > tonumber(last) then return {'RANGE', tonumber(last)} end
local current = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if seq > current then
  redis.call('HSET', KEYS[2], ARGV[1], seq)
  return seq
end
return current
"""

# KEYS: thread, atts. ARGV: prefix, thread id, attachment id, packed map, upload time string.
ADD_ATTACHMENT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
redis.call('ZADD', ARGV[1] .. ':threads:unsent', ARGV[5], ARGV[2] .. '/' .. ARGV[3])
return 1
"""

# KEYS: thread, msgs, ids, reads, atts. ARGV: prefix, thread id, closed-before time string.
# Replies: false if the thread is no longer due, else the ids of its attachments.
PURGE_THREAD = """
local th = redis.call('HMGET', KEYS[1], 'state', 'closed_at', 'family_sub', 'assigned_to')
local prefix = ARGV[1]
local tid = ARGV[2]
redis.call('ZREM', prefix .. ':threads:closed', tid)
if th[1] ~= 'closed' or not th[2] or tonumber(th[2]) >= tonumber(ARGV[3]) then
  if th[1] == 'closed' and th[2] then
    redis.call('ZADD', prefix .. ':threads:closed', th[2], tid)
  end
  return false
end
local atts = redis.call('HKEYS', KEYS[5])
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
redis.call('ZREM', prefix .. ':threads:all', tid)
redis.call('ZREM', prefix .. ':threads:open', tid)
redis.call('ZREM', prefix .. ':threads:family:' .. th[3], tid)
if th[4] then redis.call('ZREM', prefix .. ':threads:assigned:' .. th[4], tid) end
for _, aid in ipairs(atts) do redis.call('ZREM', prefix .. ':threads:unsent', tid .. '/' .. aid) end
return atts
"""

# KEYS: atts of the thread. ARGV: prefix, thread id, attachment id.
# Drops an attachment that was never sent; replies 1 if it did.
PURGE_UNSENT = """
redis.call('ZREM', ARGV[1] .. ':threads:unsent', ARGV[2] .. '/' .. ARGV[3])
local raw = redis.call('HGET', KEYS[1], ARGV[3])
if not raw then return 0 end
if cmsgpack.unpack(raw).seq then return 0 end
redis.call('HDEL', KEYS[1], ARGV[3])
return 1
"""
