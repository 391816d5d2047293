-- Queue an event again (manual retry through the API), with the same webhook-id.
-- KEYS: msg, outbox, attempts list, outboxes set
-- ARGV: mid, sid
local now = redis.call('TIME')
now = tonumber(now[1]) + tonumber(now[2]) / 1e6
if redis.call('HGET', KEYS[1], 'status') == 'pending' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'pending', 'next_attempt_at', now,
  'retry_base', redis.call('LLEN', KEYS[3]))
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('SADD', KEYS[4], ARGV[2])
return 1
