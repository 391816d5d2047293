-- The deployment-wide upstream budget, shared by poll.lua and lease.lua (prepended to both).
-- A sliding window (never more than `limit` requests in any `window` seconds) plus pacing that
-- spreads them over the window (at most `burst` requests ahead of the pace), so the minute's
-- budget is not spent in its first second.

-- Varg's `X-RateLimit-Limit` (vr:rl:cap, set by relay/upstream/poller.py) when it is below the
-- configured limit: the key's real limit wins, and the pace and burst shrink to match.
local function budget_effective(limit, pace, burst)
  local cap = tonumber(redis.call('GET', K.rl_cap) or '0')
  if cap > 0 and cap < limit then
    return cap, pace * limit / cap, math.max(1, math.floor(burst * cap / limit))
  end
  return limit, pace, burst
end

-- How many requests may go now, when one may if none, and the pace in force (for
-- budget_take): (allowance, wait, pace).
local function budget_allowance(window_key, pace_key, limit, window, pace, burst)
  limit, pace, burst = budget_effective(limit, pace, burst)
  local at = redis.call('TIME')
  local clock = tonumber(at[1]) + tonumber(at[2]) / 1e6
  redis.call('ZREMRANGEBYSCORE', window_key, '-inf', clock - window)
  local room = limit - redis.call('ZCARD', window_key)
  local tat = tonumber(redis.call('GET', pace_key) or '0')
  -- The two clocks are ~1.7e9 s, resolved to ~2.4e-7 s: count whole paces with a margin far
  -- above that, or an unused budget could allow burst - 1 (and 0 when the burst is 1).
  local paced = burst + math.floor((clock - math.max(tat, clock)) / pace + 1e-4)
  local n = math.min(room, paced)
  if n > 0 then return n, 0, pace end
  if room <= 0 then
    local oldest = redis.call('ZRANGE', window_key, 0, 0, 'WITHSCORES')
    return 0, math.max(0.01, tonumber(oldest[2]) + window - clock), pace
  end
  return 0, math.max(0.01, tat - (clock + (burst - 1) * pace)), pace
end

-- Record `n` requests taken now, at the pace budget_allowance said is in force.
local function budget_take(window_key, pace_key, n, window, pace)
  local at = redis.call('TIME')
  local clock = tonumber(at[1]) + tonumber(at[2]) / 1e6
  local tat = tonumber(redis.call('GET', pace_key) or '0')
  redis.call('SET', pace_key, math.max(tat, clock) + n * pace, 'EX', math.ceil(window) + 1)
  local seq = redis.call('INCRBY', K.rl_seq, n)
  for i = 1, n do redis.call('ZADD', window_key, clock, tostring(seq - i)) end
  redis.call('EXPIRE', window_key, math.ceil(window) + 1)
end
