-- Lease the jobs a worker chose (best first), within the budget (budget.lua, prepended).
-- A job is taken only if it is still due: another worker may have leased it since it was named
-- a candidate. A lease pushes the job's due time out by the lease length, so if the worker
-- dies the job becomes due again by itself.
--
-- KEYS: due, window log, pacing key, pause key
-- ARGV: token, lease_seconds, limit, window, pace, burst, field count, field..., job_id...
--       (the watch fields each leased job comes with: relay/store/store.py WATCH_FIELDS)
-- Returns: {job_id, fields..., job_id, fields...}
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local FIELDS = {unpack(ARGV, 8, 7 + tonumber(ARGV[7]))}
local token, lease = ARGV[1], tonumber(ARGV[2])
local window = tonumber(ARGV[4])
local jobs, taken = {}, 0
-- A 429 may have paused every worker since this one named its candidates.
if redis.call('PTTL', KEYS[4]) > 0 then return jobs end
local allowance, _, pace = budget_allowance(KEYS[2], KEYS[3], tonumber(ARGV[3]), window,
  tonumber(ARGV[5]), tonumber(ARGV[6]))
for i = 8 + #FIELDS, #ARGV do
  if taken >= allowance then break end
  local job_id = ARGV[i]
  local score = redis.call('ZSCORE', KEYS[1], job_id)
  if score and tonumber(score) <= now then
    taken = taken + 1
    redis.call('ZADD', KEYS[1], now + lease, job_id)
    local wkey = K.watch .. job_id
    redis.call('HSET', wkey, 'lease', token)
    jobs[#jobs + 1] = job_id
    local values = redis.call('HMGET', wkey, unpack(FIELDS))
    for j = 1, #FIELDS do jobs[#jobs + 1] = values[j] or '' end
  end
end
if taken > 0 then budget_take(KEYS[2], KEYS[3], taken, window, pace) end
return jobs
