-- Lease jobs a worker chose (best first) to follow on Varg's stream instead of polling them.
-- Like lease.lua: a job is taken only while it may still be polled (common.lua `pollable_at`),
-- and each connection spends one request of the shared budget (budget.lua, prepended). Also
-- within the deployment's cap on open streams (vr:streams, pruned of leases that ran out: a
-- killed worker's), and never while the upstream is known not to stream (vr:stream:off).
-- The lease pushes the job's due time out by its length; the worker renews it while the
-- stream lives (stream_renew.lua).
--
-- KEYS: due, window log, pacing key, pause key
-- ARGV: token, lease_seconds, limit, window, pace, burst, cap, field count, field..., min_interval,
--       job_id...
-- Returns: {reason, job_id, fields..., job_id, fields...}; reason is 'ok', or what stopped
-- the lease short: 'off', 'pause', 'cap' (the deployment's streams), 'budget'. A job another
-- worker took since it was named a candidate is simply skipped ('ok').
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local FIELDS = {unpack(ARGV, 9, 8 + tonumber(ARGV[8]))}
local token, lease, window = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[4])
local min_interval = tonumber(ARGV[9 + #FIELDS])
local first = 10 + #FIELDS
local jobs, taken = {'ok'}, 0
if redis.call('EXISTS', K.stream_off) == 1 then return {'off'} end
if redis.call('PTTL', KEYS[4]) > 0 then return {'pause'} end
redis.call('ZREMRANGEBYSCORE', K.streams, '-inf', now)
local room = tonumber(ARGV[7]) - redis.call('ZCARD', K.streams)
if room <= 0 then return {'cap'} end
local allowance, _, pace = budget_allowance(KEYS[2], KEYS[3], tonumber(ARGV[3]), window,
  tonumber(ARGV[5]), tonumber(ARGV[6]))
if allowance <= 0 then return {'budget'} end
local most = math.min(room, allowance)
for i = first, #ARGV do
  if taken >= most then
    if room <= allowance then jobs[1] = 'cap' else jobs[1] = 'budget' end
    break
  end
  local job_id = ARGV[i]
  local score = redis.call('ZSCORE', KEYS[1], job_id)
  local wkey = K.watch .. job_id
  if score and pollable_at(wkey, tonumber(score), min_interval) <= now then
    taken = taken + 1
    redis.call('ZADD', KEYS[1], now + lease, job_id)
    redis.call('ZADD', K.streams, now + lease, job_id)
    redis.call('HSET', wkey, 'lease', token, 'stream', '1', 'next_poll_at', '')
    jobs[#jobs + 1] = job_id
    local values = redis.call('HMGET', wkey, unpack(FIELDS))
    for j = 1, #FIELDS do jobs[#jobs + 1] = values[j] or '' end
  end
end
if taken > 0 then budget_take(KEYS[2], KEYS[3], taken, window, pace) end
return jobs
