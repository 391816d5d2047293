-- Helpers shared by the scripts; relay/store/store.py puts this file before each of them.

-- A time as stored in the subscription and watch hashes: Unix seconds to the millisecond
-- (what the API shows), 4 bytes shorter than Redis's default rendering, which keeps the
-- hashes in a smaller allocation.
local function ms(t)
  return string.format('%.3f', t)
end

-- A finished subscription wants nothing more from its job, is no longer the one a new
-- identical subscription is folded into, and is forgotten after the retention period.
-- `deleted` is final: nothing that arrives later (a 410, a last attempt) moves it. Returns
-- false, writing nothing, when the subscription is gone (purged) or already deleted.
local function finish_sub(sid, state, now)
  local skey = K.sub .. sid
  local found = redis.call('HMGET', skey, 'job_id', 'dedupe', 'state', 'owner')
  if not found[3] or found[3] == 'deleted' then return false end
  redis.call('HSET', skey, 'state', state, 'updated_at', ms(now))
  if found[3] == 'active' then
    -- It frees its place under the owner's cap (subscribe.lua counts the active ones).
    if redis.call('HINCRBY', K.active, found[4], -1) <= 0 then
      redis.call('HDEL', K.active, found[4])
    end
  end
  local subs_key = K.jobsubs .. found[1]
  redis.call('HSET', subs_key, sid, '0')
  local dedupe = 'd:' .. (found[2] or '')
  if redis.call('HGET', subs_key, dedupe) == sid then redis.call('HDEL', subs_key, dedupe) end
  redis.call('ZADD', K.finished, now, sid)
  return true
end

