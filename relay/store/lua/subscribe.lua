-- Create a subscription and make sure its job is watched, in one step.
-- A live duplicate (same owner, job_id, url, events) is returned instead of a new one: the
-- job's subscriptions hash maps `d:{digest}` to it (relay/store/store.py dedupe_digest).
-- KEYS: sub, owner index, job's subscriptions, watch, due, job JSON
-- An owner holds at most `cap` active subscriptions (-1: no cap); K.active counts them, and
-- finish_sub (common.lua) gives the place back.
-- ARGV: sid, owner, job_id, url, events (letters: relay/events.py), metadata_json,
--       watch_timeout, digest, cap
-- Returns {sid, 1} created, {existing sid, 0} folded into a live duplicate, {'', -1} over cap.
local now = redis.call('TIME')
now = tonumber(now[1]) + tonumber(now[2]) / 1e6
local dedupe = 'd:' .. ARGV[8]
local existing = redis.call('HGET', KEYS[3], dedupe)
if existing and redis.call('HGET', K.sub .. existing, 'state') == 'active' then
  return {existing, 0}
end
local cap = tonumber(ARGV[9])
if cap >= 0 and tonumber(redis.call('HGET', K.active, ARGV[2]) or '0') >= cap then
  return {'', -1}
end
redis.call('HINCRBY', K.active, ARGV[2], 1)
local sid = ARGV[1]
local fields = {'owner', ARGV[2], 'job_id', ARGV[3], 'events', ARGV[5], 'state', 'active',
  'last_status', '', 'created_at', ms(now), 'updated_at', ms(now), 'dedupe', ARGV[8]}
-- One value past Redis's default hash-max-listpack-value (64 bytes) would convert the whole
-- hash to a hashtable, several times the bytes: a long url or metadata gets a key of its own,
-- vr:sub:{sid}:{field}, and is absent from the hash.
local function keep(field, value)
  if #value > 64 then
    redis.call('SET', KEYS[1] .. ':' .. field, value)
  else
    table.insert(fields, field)
    table.insert(fields, value)
  end
end
keep('url', ARGV[4])
keep('metadata', ARGV[6])
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('ZADD', KEYS[2], 0, sid)
redis.call('HSET', KEYS[3], sid, '1', dedupe, sid)
redis.call('PERSIST', KEYS[4])
redis.call('PERSIST', KEYS[6])
local deadline = now + tonumber(ARGV[7])
local old_deadline = tonumber(redis.call('HGET', KEYS[4], 'deadline') or '0')
if redis.call('HGET', KEYS[4], 'active') ~= '1' then
  redis.call('HSET', KEYS[4], 'active', '1', 'started_at', ms(now),
    'first_404', '', 'failures', 0)
end
redis.call('HSET', KEYS[4], 'deadline', ms(math.max(deadline, old_deadline)),
  'next_poll_at', ms(now))
-- Poll soon so the new subscription hears the current status, but never later than planned.
-- A poll in flight (leased) will tell it anyway: its write-back fans out to this subscription.
if not redis.call('HGET', KEYS[4], 'lease') then
  redis.call('ZADD', KEYS[5], 'LT', now, ARGV[3])
end
redis.call('ZADD', KEYS[5], 'NX', now, ARGV[3])
-- First in line: the subscriber waits for a status. The mark names the owner waiting longest,
-- so first looks are shared between owners in turn (relay/upstream/policy.py `rank`).
redis.call('HSETNX', KEYS[4], 'urgent', ARGV[2])
return {sid, 1}
