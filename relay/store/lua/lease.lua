-- Lease the jobs a worker chose (best first), within the budget (budget.lua and common.lua,
-- prepended). A job is taken only if it may still be polled (common.lua `pollable_at`): another
-- worker may have leased it since it was named a candidate. A lease pushes the job's due time
-- out by the lease length, so if the worker dies the job becomes due again by itself.
-- Each lease is noted in vr:firstlooks (relay/upstream/policy.py FirstLooks): a first look
-- under its owner, and by kind (a re-subscribed job's first look, or any other poll), so
-- owners take turns at first looks and those alternate with other polls.
--
-- KEYS: due, window log, pacing key, pause key
-- ARGV: token, lease_seconds, limit, window, pace, burst, field count, field..., min_interval,
--       job_id... (the watch fields each leased job comes with: store.py WATCH_FIELDS)
-- Returns: {job_id, fields..., job_id, fields...}
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local FIELDS = {unpack(ARGV, 8, 7 + tonumber(ARGV[7]))}
local min_interval = tonumber(ARGV[8 + #FIELDS])
local token, lease = ARGV[1], tonumber(ARGV[2])
local window = tonumber(ARGV[4])

local function note_look(wkey)
  local w = redis.call('HMGET', wkey, 'urgent', 'last_polled_at')
  local kind = 'other'
  if w[1] and w[1] ~= '' then
    redis.call('HSET', K.firstlooks, w[1], ms(now))
    if w[2] and w[2] ~= '' then kind = 'tier' end
  end
  redis.call('HSET', K.firstlooks, kind, ms(now))
end

local jobs, taken = {}, 0
-- A 429 may have paused every worker since this one named its candidates.
if redis.call('PTTL', KEYS[4]) > 0 then return jobs end
local allowance, _, pace = budget_allowance(KEYS[2], KEYS[3], tonumber(ARGV[3]), window,
  tonumber(ARGV[5]), tonumber(ARGV[6]))
for i = 9 + #FIELDS, #ARGV do
  if taken >= allowance then break end
  local job_id = ARGV[i]
  local wkey = K.watch .. job_id
  local score = redis.call('ZSCORE', KEYS[1], job_id)
  if score and pollable_at(wkey, tonumber(score), min_interval) <= now then
    taken = taken + 1
    note_look(wkey)
    redis.call('ZADD', KEYS[1], now + lease, job_id)
    redis.call('HSET', wkey, 'lease', token)
    jobs[#jobs + 1] = job_id
    local values = redis.call('HMGET', wkey, unpack(FIELDS))
    for j = 1, #FIELDS do jobs[#jobs + 1] = values[j] or '' end
  end
end
if taken > 0 then budget_take(KEYS[2], KEYS[3], taken, window, pace) end
return jobs
