-- One round trip per poll batch: write back the results of the last batch, then name the
-- candidates for the next one.
--
-- Write-back: for each job whose lease is still ours, store what was seen, and when its status
-- differs from what a subscription last heard, queue one event for that subscription in the
-- same step (so a crash loses nothing and a repeat poll adds nothing).
--
-- Candidates: the jobs a worker may poll now (common.lua `pollable_at`: due, or not polled
-- within the minimum interval), up to max_candidates of them, the soonest due first (the sorted
-- set's score is when a job becomes worth polling by its schedule), with what the worker needs
-- to rank them, each owner's last first look (vr:firstlooks) and how many requests the budget
-- allows now (budget.lua). Nothing is leased here: the worker ranks, lease.lua takes the best.
--
-- KEYS: due, outboxes, window log, pacing key, pause key, durations
-- ARGV: decisions_json, retention, max_candidates, limit, window, pace, burst, min_interval,
--       field... (the watch fields each candidate comes with: store.py CANDIDATE_FIELDS)
-- decision: relay/store/decision.py `Decision.lua()` (a status with a null job is announced
--           with the job as last seen). A decision from a stream (relay/upstream/streams.py)
--           with `hold` keeps its lease for that long: the job stays out of the poll schedule
--           while its stream lives. Either way the same lease token must match, so a stream
--           and a poll never both write one change.
-- Returns: {now, wait, allowance, kicked_json, reason, first_looks_json,
--           job_id, fields..., job_id, fields...}
-- reason: 'due' (candidates follow), 'idle' (nothing to poll), 'budget' (they wait), 'pause'
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local KEYS_DUE, KEYS_OUTBOXES = KEYS[1], KEYS[2]

-- ---------------------------------------------------------------- write-back
local retention = tonumber(ARGV[2])
local min_interval = tonumber(ARGV[8])
local kicked = {}

local function new_msg_id()
  local seq = redis.call('INCR', K.msg_seq)
  return string.format('msg_%011x%08x', math.floor(now * 1000), seq % 4294967296)
end

local function queue_event(d, sid, sub, previous)
  local mid = new_msg_id()
  local etype = d.event_type
  local prev_json, job_json = 'null', 'null'
  if previous ~= '' then prev_json = cjson.encode(previous) end
  if type(d.job) == 'string' then job_json = d.job end
  local body = '{"type":' .. cjson.encode(etype) .. ',"timestamp":' .. cjson.encode(d.observed_iso)
    .. ',"data":{"subscription_id":' .. cjson.encode(sid) .. ',"job_id":' .. cjson.encode(d.job_id)
    .. ',"status":' .. cjson.encode(d.status) .. ',"previous_status":' .. prev_json
    .. ',"job":' .. job_json .. ',"metadata":' .. sub[3] .. '}}'
  local terminal = '0'
  if d.terminal then terminal = '1' end
  redis.call('HSET', K.msg .. mid, 'id', mid, 'sub_id', sid, 'event_type', etype,
    'status', 'pending', 'next_attempt_at', now, 'created_at', now, 'body', body,
    'terminal', terminal, 'retry_base', 0, 'observed_at', d.observed_at)
  redis.call('RPUSH', K.outbox .. sid, mid)
  redis.call('RPUSH', K.msgs .. sid, mid)
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
  local subs_key = K.jobsubs .. d.job_id
  for _, sid in ipairs(listening(subs_key)) do
    local skey = K.sub .. sid
    local sub = redis.call('HMGET', skey, 'state', 'last_status', 'metadata', 'events')
    if not sub[1] then
      redis.call('HDEL', subs_key, sid)  -- purged: forget it, recreate nothing
    elseif sub[1] ~= 'active' then
      redis.call('HSET', subs_key, sid, '0')
    elseif sub[2] ~= d.status then
      local wanted = string.find(sub[4], EVENT_CODES[d.event_type], 1, true)
      if wanted then
        sub[3] = sub[3] or redis.call('GET', skey .. ':metadata')  -- long: in its own key
        queue_event(d, sid, sub, sub[2])
      end
      redis.call('HSET', skey, 'last_status', d.status, 'updated_at', ms(now))
      if d.terminal then
        -- No more events for it; it becomes `done` once its last event is delivered.
        redis.call('HSET', subs_key, sid, '0')
        if not wanted then finish_sub(sid, 'done', now) end
      end
    end
  end
end

local function end_watch(wkey, job_id)
  redis.call('ZREM', KEYS_DUE, job_id)
  redis.call('ZREM', K.streams, job_id)
  redis.call('HDEL', wkey, 'lease', 'stream', 'hinted')
  redis.call('HSET', wkey, 'active', '0', 'ended_at', ms(now), 'next_poll_at', '')
  redis.call('EXPIRE', wkey, retention)
  redis.call('EXPIRE', K.job .. job_id, retention)
end

-- The job JSON has a key of its own: at 200+ bytes it would push the watch hash out of Redis's
-- compact encoding (see relay/store/store.py). A decision without one (not_found, watch_expired)
-- announces the job as last seen.
local function record_job(d, wkey)
  local jkey = K.job .. d.job_id
  if type(d.job) ~= 'string' then
    d.job = redis.call('GET', jkey)
    return
  end
  redis.call('SET', jkey, d.job)
  if type(d.model) == 'string' then redis.call('HSET', wkey, 'model', d.model) end
  if type(d.created_at) == 'string' then redis.call('HSET', wkey, 'created_at', d.created_at) end
end

for _, d in ipairs(cjson.decode(ARGV[1])) do
  local wkey = K.watch .. d.job_id
  if redis.call('HGET', wkey, 'lease') == d.token then
    local held = d.hold > 0
    if held then
      redis.call('HDEL', wkey, 'urgent')
    else
      redis.call('HDEL', wkey, 'lease', 'urgent', 'stream')
      redis.call('ZREM', K.streams, d.job_id)
    end
    redis.call('HSET', wkey, 'last_polled_at', ms(d.last_polled_at), 'first_404', d.first_404,
      'failures', d.failures)
    if not d.stream then redis.call('HINCRBY', wkey, 'polls', 1) end
    if type(d.learn) == 'string' then redis.call('HINCRBY', KEYS[6], d.learn, 1) end
    if type(d.status) == 'string' then
      redis.call('HSET', wkey, 'status', d.status)
      record_job(d, wkey)
      fan_out(d)
    end
    if d.end_watch or #listening(K.jobsubs .. d.job_id) == 0 then
      end_watch(wkey, d.job_id)
    elseif held then
      redis.call('ZADD', KEYS_DUE, now + d.hold, d.job_id)
      redis.call('ZADD', K.streams, now + d.hold, d.job_id)
      redis.call('HSET', wkey, 'next_poll_at', '')
    else
      -- A Varg webhook arrived while this poll was in flight (hint.lua): look again at once.
      local delay = d.delay
      if redis.call('HDEL', wkey, 'hinted') == 1 then delay = 0 end
      redis.call('ZADD', KEYS_DUE, now + delay, d.job_id)
      -- The earliest it may be polled again: with budget to spare, that is when it is.
      redis.call('HSET', wkey, 'next_poll_at', ms(pollable_at(wkey, now + delay, min_interval)))
    end
  end
end

-- ---------------------------------------------------------------- candidates
local FIELDS = {unpack(ARGV, 9)}
local max_candidates = tonumber(ARGV[3])
local kicked_json = '[]'
if #kicked > 0 then kicked_json = cjson.encode(kicked) end

local function reply(wait, allowance, reason, looks, jobs)
  local out = {tostring(now), tostring(wait), tostring(allowance), kicked_json, reason,
    looks or '{}'}
  for _, v in ipairs(jobs or {}) do out[#out + 1] = v end
  return out
end

if max_candidates <= 0 then return reply(0, 0, 'idle') end
local pause = redis.call('PTTL', KEYS[5])
if pause > 0 then return reply(pause / 1000, 0, 'pause') end

-- The soonest due first: with more live jobs than max_candidates, those the schedules favour.
local listed = redis.call('ZRANGE', KEYS_DUE, 0, max_candidates - 1, 'WITHSCORES')
local ready, soonest = {}, now + 3600
for i = 1, #listed, 2 do
  local at = tonumber(listed[i + 1])
  if at > now then at = pollable_at(K.watch .. listed[i], at, min_interval) end
  if at <= now then ready[#ready + 1] = listed[i] else soonest = math.min(soonest, at) end
end
if #ready == 0 then return reply(math.max(0, soonest - now), 0, 'idle') end
local allowance, wait = budget_allowance(KEYS[3], KEYS[4], tonumber(ARGV[4]),
  tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]))
if allowance <= 0 then return reply(wait, 0, 'budget') end
local jobs = {}
for _, job_id in ipairs(ready) do
  jobs[#jobs + 1] = job_id
  local values = redis.call('HMGET', K.watch .. job_id, unpack(FIELDS))
  for j = 1, #FIELDS do jobs[#jobs + 1] = values[j] or '' end
end
local looks = redis.call('HGETALL', K.firstlooks)
local looks_json = '{}'
if #looks > 0 then
  local map = {}
  for i = 1, #looks, 2 do map[looks[i]] = looks[i + 1] end
  looks_json = cjson.encode(map)
end
return reply(0, allowance, 'due', looks_json, jobs)
