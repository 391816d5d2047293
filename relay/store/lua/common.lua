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


-- When a worker may poll a watched job: at its due time (`score` in the due set), or, when the
-- budget has room, once RELAY_POLL_MIN_INTERVAL has passed since its last poll, whatever its
-- schedule says; not before its due time while it is leased or waits out an upstream error or
-- a 404 on a schedule of its own. A negative min_interval: at its due time only.
local function pollable_at(wkey, score, min_interval)
  if min_interval < 0 then return score end  -- due jobs only
  local w = redis.call('HMGET', wkey, 'lease', 'failures', 'first_404', 'last_polled_at')
  if w[1] or (w[2] and w[2] ~= '0') or (w[3] and w[3] ~= '') or not w[4] then return score end
  return math.min(score, tonumber(w[4]) + min_interval)
end
