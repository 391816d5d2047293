-- Record one delivery attempt and its consequence, in one step.
-- KEYS: msg, outbox, sub, attempts list, outboxes set
-- ARGV: mid, attempt_json, outcome ('succeeded' | 'failed' | 'retry' | 'disabled'), next_attempt_at
-- Returns 1, or 0 when the delivery or its subscription is gone (purged while the attempt was
-- in flight): then nothing is written (no attempts list, no subscription fields, without TTL).
local now = redis.call('TIME')
now = tonumber(now[1]) + tonumber(now[2]) / 1e6
local mid, outcome = ARGV[1], ARGV[3]
local msg = redis.call('HMGET', KEYS[1], 'sub_id', 'status')
local sid, status = msg[1], msg[2]
if not sid or redis.call('EXISTS', KEYS[3]) == 0 then return 0 end

redis.call('RPUSH', KEYS[4], ARGV[2])
if outcome == 'retry' then
  -- A delivery no longer pending (its subscription was deleted meanwhile) is not rescheduled.
  if status == 'pending' then redis.call('HSET', KEYS[1], 'next_attempt_at', ARGV[4]) end
  return 1
end
redis.call('HSET', KEYS[1], 'status', outcome == 'succeeded' and 'succeeded' or 'failed',
  'next_attempt_at', '')
redis.call('LREM', KEYS[2], 1, mid)
if outcome == 'disabled' then
  -- 410 Gone: the receiver asks for nothing more, so pending events are dropped as failed.
  for _, other in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
    redis.call('HSET', K.msg .. other, 'status', 'failed', 'next_attempt_at', '')
  end
  redis.call('DEL', KEYS[2])
  finish_sub(sid, 'disabled', now)  -- not once deleted: finish_sub leaves that alone
elseif redis.call('HGET', KEYS[1], 'terminal') == '1'
    and redis.call('HGET', KEYS[3], 'state') == 'active' then
  finish_sub(sid, 'done', now)
end
if redis.call('LLEN', KEYS[2]) == 0 then redis.call('SREM', KEYS[5], sid) end
return 1
