-- Helpers shared by the scripts; relay/store/store.py puts this file before each of them.

-- A time as stored in the subscription and watch hashes: Unix seconds to the millisecond
-- (what the API shows), 4 bytes shorter than Redis's default rendering, which keeps the
-- hashes in a smaller allocation.
local function ms(t)
  return string.format('%.3f', t)
end

-- A finished subscription wants nothing more from its job, is no longer the one a new
-- identical subscription is folded into, and is forgotten after the retention period.
local function finish_sub(sid, state, now)
  local skey = K.sub .. sid
  redis.call('HSET', skey, 'state', state, 'updated_at', ms(now))
  local found = redis.call('HMGET', skey, 'job_id', 'dedupe')
  local subs_key = K.jobsubs .. found[1]
  redis.call('HSET', subs_key, sid, '0')
  local dedupe = 'd:' .. (found[2] or '')
  if redis.call('HGET', subs_key, dedupe) == sid then redis.call('HDEL', subs_key, dedupe) end
  redis.call('ZADD', K.finished, now, sid)
end

