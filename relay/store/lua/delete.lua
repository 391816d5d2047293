-- Delete a subscription: no further deliveries; queued events are marked failed.
-- KEYS: sub, outbox, outboxes set
-- ARGV: sid
-- Returns 1, or 0 when there is no such subscription (purged): then nothing is written, so no
-- part of a record is recreated without the keys that would let retention find it.
local now = redis.call('TIME')
now = tonumber(now[1]) + tonumber(now[2]) / 1e6
local sid = ARGV[1]
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 0 end
if state == 'deleted' then return 1 end
for _, mid in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
  redis.call('HSET', K.msg .. mid, 'status', 'failed', 'next_attempt_at', '')
end
redis.call('DEL', KEYS[2])
redis.call('SREM', KEYS[3], sid)
finish_sub(sid, 'deleted', now)
return 1
