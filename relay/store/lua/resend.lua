-- Queue an event again (manual retry through the API), with the same webhook-id.
-- KEYS: msg, outbox, attempts list, outboxes set, sub
-- ARGV: mid, sid
-- Returns 'queued'; 'pending' (already queued: sent once); 'missing' (no such delivery of that
-- subscription, or it was purged); 'deleted' (nothing more is sent for it). Only 'queued'
-- writes anything.
local now = redis.call('TIME')
now = tonumber(now[1]) + tonumber(now[2]) / 1e6
local msg = redis.call('HMGET', KEYS[1], 'status', 'sub_id')
if msg[2] ~= ARGV[2] then return 'missing' end
local state = redis.call('HGET', KEYS[5], 'state')
if not state then return 'missing' end
if state == 'deleted' then return 'deleted' end
if msg[1] == 'pending' then return 'pending' end
redis.call('HSET', KEYS[1], 'status', 'pending', 'next_attempt_at', now,
  'retry_base', redis.call('LLEN', KEYS[3]))
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('SADD', KEYS[4], ARGV[2])
return 'queued'
