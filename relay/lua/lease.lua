-- Lease a batch of due jobs for one worker, within the deployment-wide upstream budget.
-- A lease pushes the job's due time out by the lease length: if the worker dies, the job
-- simply becomes due again. The budget is a sliding window (never more than `limit` requests
-- in any `window` seconds) plus a pacing interval that spreads them over the window.
-- KEYS: due, window log, pacing key, pause key
-- ARGV: max_batch, lease_seconds, token, limit, window_seconds, pace_seconds
-- Returns: {now, wait_seconds, job_id, fields..., job_id, fields...}
local FIELDS = {'status', 'model', 'created_at', 'started_at', 'deadline', 'first_404',
  'failures', 'polls', 'last_polled_at', 'job'}
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local max_batch, lease = tonumber(ARGV[1]), tonumber(ARGV[2])
local limit, window, pace = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])

local pause = redis.call('PTTL', KEYS[4])
if pause > 0 then return {tostring(now), tostring(pause / 1000)} end

local due = redis.call('ZRANGE', KEYS[1], '-inf', now, 'BYSCORE', 'LIMIT', 0, max_batch)
if #due == 0 then
  local next_due = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  local wait = 3600
  if next_due[2] then wait = math.max(0, tonumber(next_due[2]) - now) end
  return {tostring(now), tostring(wait)}
end

-- Budget: requests left in the sliding window, and tokens earned by pacing.
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
local room = limit - redis.call('ZCARD', KEYS[2])
local tat = tonumber(redis.call('GET', KEYS[3]) or '0')
local burst = math.max(1, math.floor(limit / 10))
local paced = math.floor((now + burst * pace - math.max(tat, now)) / pace)
local n = math.min(#due, room, paced)
if n <= 0 then
  local wait = pace
  if room <= 0 then
    local oldest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
    wait = math.max(0.01, tonumber(oldest[2]) + window - now)
  elseif tat > now then
    wait = math.max(0.01, tat - (now + (burst - 1) * pace))
  end
  return {tostring(now), tostring(wait)}
end
redis.call('SET', KEYS[3], math.max(tat, now) + n * pace, 'EX', math.ceil(window) + 1)
local seq = redis.call('INCRBY', 'vr:rl:seq', n)
local out = {tostring(now), '0'}
for i = 1, n do
  local job_id = due[i]
  redis.call('ZADD', KEYS[2], now, tostring(seq - i))
  redis.call('ZADD', KEYS[1], now + lease, job_id)
  local wkey = 'vr:watch:' .. job_id
  redis.call('HSET', wkey, 'lease', ARGV[3])
  out[#out + 1] = job_id
  local values = redis.call('HMGET', wkey, unpack(FIELDS))
  for j = 1, #FIELDS do out[#out + 1] = values[j] or '' end
end
redis.call('EXPIRE', KEYS[2], math.ceil(window) + 1)
return out
