-- Renew the leases of the streams a worker holds, and say which it must give up and which
-- jobs got a new subscription (`urgent`: it waits for the status the stream already knows).
-- A stream is given up when its lease moved on (another worker took the job after this one
-- stalled), the watch ended, nobody listens any more, or the watch's deadline passed (then a
-- poll decides the expiry).
--
-- KEYS: due
-- ARGV: lease_seconds, job_id, token, job_id, token, ...
-- Returns: {count of jobs to give up, those job ids..., urgent job ids...}
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local lease = tonumber(ARGV[1])
local lost, urgent = {}, {}

local function listened(job_id)
  for _, value in ipairs(redis.call('HVALS', K.jobsubs .. job_id)) do
    if value == '1' then return true end
  end
  return false
end

for i = 2, #ARGV, 2 do
  local job_id, token = ARGV[i], ARGV[i + 1]
  local w = redis.call('HMGET', K.watch .. job_id, 'lease', 'urgent', 'active', 'deadline')
  local deadline = tonumber(w[4])
  local expired = deadline ~= nil and now >= deadline
  if w[1] ~= token or w[3] ~= '1' or expired or not listened(job_id) then
    lost[#lost + 1] = job_id
  else
    redis.call('ZADD', KEYS[1], 'XX', now + lease, job_id)
    redis.call('ZADD', K.streams, now + lease, job_id)
    if w[2] then urgent[#urgent + 1] = job_id end
  end
end
local out = {#lost}
for _, job_id in ipairs(lost) do out[#out + 1] = job_id end
for _, job_id in ipairs(urgent) do out[#out + 1] = job_id end
return out
