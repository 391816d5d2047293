-- One round trip per poll batch: write back the results of the last batch, then lease the next.
--
-- Write-back: for each job whose lease is still ours, store what was seen, and when its status
-- differs from what a subscription last heard, queue one event for that subscription in the
-- same step (so a crash loses nothing and a repeat poll adds nothing).
--
-- Lease: take due jobs within the deployment-wide upstream budget: a sliding window (never
-- more than `limit` requests in any `window` seconds) plus pacing that spreads them over the
-- window. A lease pushes the job's due time out by the lease length: if the worker dies, the
-- job becomes due again by itself. The budget controller `theta` (the chance of a change a
-- poll should buy) rises while the budget cannot serve every due job, and falls while it can.
--
-- KEYS: due, outboxes, window log, pacing key, pause key, theta key, durations
-- ARGV: decisions_json, retention, max_batch, lease_seconds, token, limit, window, pace
-- decision: {job_id, token, status|null, job|null (raw JSON text), delay, first_404, failures,
--            end_watch, observed_at, observed_iso, last_polled_at, model?, created_at?, learn?}
--            (a status with a null job is announced with the job as last seen)
-- Returns: {now, wait, theta, kicked_json, reason, job_id, fields..., job_id, fields...}
-- reason: 'leased', 'idle' (nothing due), 'budget' (due jobs wait for budget), 'pause'
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local KEYS_DUE, KEYS_OUTBOXES = KEYS[1], KEYS[2]

-- ---------------------------------------------------------------- write-back
local retention = tonumber(ARGV[2])
local kicked = {}

local TERMINAL = {completed = true, failed = true, cancelled = true, not_found = true,
  watch_expired = true}
local KNOWN = {queued = true, processing = true, completed = true, failed = true,
  cancelled = true, not_found = true, watch_expired = true}

-- A subscription's events are one letter per type: relay/events.py EVENT_CODES.
local EVENT_CODES = {['job.queued'] = 'q', ['job.processing'] = 'p', ['job.completed'] = 'c',
  ['job.failed'] = 'f', ['job.cancelled'] = 'x', ['job.status_changed'] = 's',
  ['job.not_found'] = 'n', ['job.watch_expired'] = 'w'}

local function event_type(status)
  if KNOWN[status] then return 'job.' .. status end
  return 'job.status_changed'
end

local function new_msg_id()
  local seq = redis.call('INCR', 'vr:msg:seq')
  return string.format('msg_%011x%08x', math.floor(now * 1000), seq % 4294967296)
end

local function queue_event(d, sid, sub, previous)
  local mid = new_msg_id()
  local etype = event_type(d.status)
  local prev_json, job_json = 'null', 'null'
  if previous ~= '' then prev_json = cjson.encode(previous) end
  if type(d.job) == 'string' then job_json = d.job end
  local body = '{"type":' .. cjson.encode(etype) .. ',"timestamp":' .. cjson.encode(d.observed_iso)
    .. ',"data":{"subscription_id":' .. cjson.encode(sid) .. ',"job_id":' .. cjson.encode(d.job_id)
    .. ',"status":' .. cjson.encode(d.status) .. ',"previous_status":' .. prev_json
    .. ',"job":' .. job_json .. ',"metadata":' .. sub[3] .. '}}'
  local terminal = '0'
  if TERMINAL[d.status] then terminal = '1' end
  redis.call('HSET', 'vr:msg:' .. mid, 'id', mid, 'sub_id', sid, 'event_type', etype,
    'status', 'pending', 'next_attempt_at', now, 'created_at', now, 'body', body,
    'terminal', terminal, 'retry_base', 0, 'observed_at', d.observed_at)
  redis.call('RPUSH', 'vr:outbox:' .. sid, mid)
  redis.call('RPUSH', 'vr:msgs:' .. sid, mid)
  redis.call('SADD', KEYS_OUTBOXES, sid)
  kicked[#kicked + 1] = sid
end

-- The job's subscriptions that still want events from it (jobsubs: sid -> '1').
local function listening(subs_key)
  local found, index = {}, redis.call('HGETALL', subs_key)
  for i = 1, #index, 2 do
    if index[i + 1] == '1' then found[#found + 1] = index[i] end
  end
  return found
end

local function fan_out(d)
  local subs_key = 'vr:jobsubs:' .. d.job_id
  for _, sid in ipairs(listening(subs_key)) do
    local skey = 'vr:sub:' .. sid
    local sub = redis.call('HMGET', skey, 'state', 'last_status', 'metadata', 'events')
    if sub[1] ~= 'active' then
      redis.call('HSET', subs_key, sid, '0')
    elseif sub[2] ~= d.status then
      local wanted = string.find(sub[4], EVENT_CODES[event_type(d.status)], 1, true)
      if wanted then
        sub[3] = sub[3] or redis.call('GET', skey .. ':metadata')  -- long: in its own key
        queue_event(d, sid, sub, sub[2])
      end
      redis.call('HSET', skey, 'last_status', d.status, 'updated_at', ms(now))
      if TERMINAL[d.status] then
        -- No more events for it; it becomes `done` once its last event is delivered.
        redis.call('HSET', subs_key, sid, '0')
        if not wanted then finish_sub(sid, 'done', now) end
      end
    end
  end
end

local function end_watch(wkey, job_id)
  redis.call('ZREM', KEYS_DUE, job_id)
  redis.call('HSET', wkey, 'active', '0', 'ended_at', ms(now), 'next_poll_at', '')
  redis.call('EXPIRE', wkey, retention)
  redis.call('EXPIRE', 'vr:job:' .. job_id, retention)
end

-- The job JSON has a key of its own: at 200+ bytes it would push the watch hash out of Redis's
-- compact encoding (see relay/store.py). A decision without one (not_found, watch_expired)
-- announces the job as last seen.
local function record_job(d, wkey)
  local jkey = 'vr:job:' .. d.job_id
  if type(d.job) ~= 'string' then
    d.job = redis.call('GET', jkey)
    return
  end
  redis.call('SET', jkey, d.job)
  if type(d.model) == 'string' then redis.call('HSET', wkey, 'model', d.model) end
  if type(d.created_at) == 'string' then redis.call('HSET', wkey, 'created_at', d.created_at) end
end

for _, d in ipairs(cjson.decode(ARGV[1])) do
  local wkey = 'vr:watch:' .. d.job_id
  if redis.call('HGET', wkey, 'lease') == d.token then
    redis.call('HDEL', wkey, 'lease')
    redis.call('HSET', wkey, 'last_polled_at', ms(d.last_polled_at), 'first_404', d.first_404,
      'failures', d.failures)
    redis.call('HINCRBY', wkey, 'polls', 1)
    if type(d.learn) == 'string' then redis.call('HINCRBY', KEYS[7], d.learn, 1) end
    if type(d.status) == 'string' then
      redis.call('HSET', wkey, 'status', d.status)
      record_job(d, wkey)
      fan_out(d)
    end
    if d.end_watch or #listening('vr:jobsubs:' .. d.job_id) == 0 then
      end_watch(wkey, d.job_id)
    else
      redis.call('ZADD', KEYS_DUE, now + d.delay, d.job_id)
      redis.call('HSET', wkey, 'next_poll_at', ms(now + d.delay))
    end
  end
end

-- ---------------------------------------------------------------- lease
local FIELDS = {'status', 'model', 'created_at', 'started_at', 'deadline', 'first_404',
  'failures', 'polls', 'last_polled_at', 'job'}
local max_batch, lease, token = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local limit, window, pace = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local KEYS_WINDOW, KEYS_PACE, KEYS_PAUSE, KEYS_THETA = KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local THETA_MIN, THETA_MAX = 0.01, 0.5
local theta = tonumber(redis.call('GET', KEYS_THETA) or '0.05')
local kicked_json = '[]'
if #kicked > 0 then kicked_json = cjson.encode(kicked) end

local function reply(wait, jobs, reason)
  local out = {tostring(now), tostring(wait), tostring(theta), kicked_json, reason or 'idle'}
  for _, v in ipairs(jobs or {}) do out[#out + 1] = v end
  return out
end

local function steer(factor)
  theta = math.min(THETA_MAX, math.max(THETA_MIN, theta * factor))
  redis.call('SET', KEYS_THETA, theta)
end

if max_batch <= 0 then return reply(0) end
local pause = redis.call('PTTL', KEYS_PAUSE)
if pause > 0 then return reply(pause / 1000, nil, 'pause') end

local due = redis.call('ZRANGE', KEYS_DUE, '-inf', now, 'BYSCORE', 'LIMIT', 0, max_batch)
if #due == 0 then
  local next_due = redis.call('ZRANGE', KEYS_DUE, 0, 0, 'WITHSCORES')
  local wait = 3600
  if next_due[2] then wait = math.max(0, tonumber(next_due[2]) - now) end
  return reply(wait)
end

-- Budget: requests left in the sliding window, and requests earned by pacing.
redis.call('ZREMRANGEBYSCORE', KEYS_WINDOW, '-inf', now - window)
local room = limit - redis.call('ZCARD', KEYS_WINDOW)
local tat = tonumber(redis.call('GET', KEYS_PACE) or '0')
local burst = math.max(1, math.floor(limit / 10))
local paced = math.floor((now + burst * pace - math.max(tat, now)) / pace)
local n = math.min(#due, room, paced)
if n < #due then steer(1.05) elseif n < math.min(room, paced) then steer(0.98) end
if n <= 0 then
  local wait = pace
  if room <= 0 then
    local oldest = redis.call('ZRANGE', KEYS_WINDOW, 0, 0, 'WITHSCORES')
    wait = math.max(0.01, tonumber(oldest[2]) + window - now)
  elseif tat > now then
    wait = math.max(0.01, tat - (now + (burst - 1) * pace))
  end
  return reply(wait, nil, 'budget')
end
redis.call('SET', KEYS_PACE, math.max(tat, now) + n * pace, 'EX', math.ceil(window) + 1)
local seq = redis.call('INCRBY', 'vr:rl:seq', n)
local jobs = {}
for i = 1, n do
  local job_id = due[i]
  redis.call('ZADD', KEYS_WINDOW, now, tostring(seq - i))
  redis.call('ZADD', KEYS_DUE, now + lease, job_id)
  local wkey = 'vr:watch:' .. job_id
  redis.call('HSET', wkey, 'lease', token)
  jobs[#jobs + 1] = job_id
  local values = redis.call('HMGET', wkey, unpack(FIELDS))
  for j = 1, #FIELDS do jobs[#jobs + 1] = values[j] or '' end
end
redis.call('EXPIRE', KEYS_WINDOW, math.ceil(window) + 1)
return reply(0, jobs, 'leased')
