-- Delete a subscription: no further deliveries; queued events are marked failed.
-- KEYS: sub, outbox, outboxes set
-- ARGV: sid
local now = redis.call('TIME')
now = tonumber(now[1]) + tonumber(now[2]) / 1e6
local sid = ARGV[1]
for _, mid in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
  redis.call('HSET', K.msg .. mid, 'status', 'failed', 'next_attempt_at', '')
end
redis.call('DEL', KEYS[2])
redis.call('SREM', KEYS[3], sid)
finish_sub(sid, 'deleted', now)
return 1
