-- Create a subscription and make sure its job is watched, in one step.
-- A live duplicate (same owner, job_id, url, events) is returned instead of a new one.
-- KEYS: dedupe, sub, owner index, job's active subs, job's all subs, watch, due, job JSON
-- ARGV: sid, owner, job_id, url, events (letters: relay/events.py), metadata_json, watch_timeout
local now = redis.call('TIME')
now = tonumber(now[1]) + tonumber(now[2]) / 1e6
local existing = redis.call('GET', KEYS[1])
if existing and redis.call('HGET', 'vr:sub:' .. existing, 'state') == 'active' then
  return {existing, 0}
end
local sid = ARGV[1]
redis.call('HSET', KEYS[2], 'id', sid, 'owner', ARGV[2], 'job_id', ARGV[3], 'url', ARGV[4],
  'events', ARGV[5], 'metadata', ARGV[6], 'state', 'active', 'last_status', '',
  'created_at', now, 'updated_at', now, 'dedupe', KEYS[1])
redis.call('SET', KEYS[1], sid)
redis.call('ZADD', KEYS[3], 0, sid)
redis.call('SADD', KEYS[4], sid)
redis.call('SADD', KEYS[5], sid)
redis.call('PERSIST', KEYS[6])
redis.call('PERSIST', KEYS[8])
local deadline = now + tonumber(ARGV[7])
local old_deadline = tonumber(redis.call('HGET', KEYS[6], 'deadline') or '0')
if redis.call('HGET', KEYS[6], 'active') ~= '1' then
  redis.call('HSET', KEYS[6], 'job_id', ARGV[3], 'active', '1', 'started_at', now,
    'first_404', '', 'failures', 0)
end
redis.call('HSET', KEYS[6], 'deadline', math.max(deadline, old_deadline), 'next_poll_at', now)
-- Poll soon so the new subscription hears the current status, but never later than planned.
redis.call('ZADD', KEYS[7], 'LT', now, ARGV[3])
redis.call('ZADD', KEYS[7], 'NX', now, ARGV[3])
return {sid, 1}
