-- Pause every worker's polling for `ms` milliseconds, unless a longer pause is in force: a
-- pause only ever grows (a short 401 pause must not cut a 429's longer Retry-After).
-- KEYS: pause key
-- ARGV: ms
-- Returns the pause in force afterwards, in milliseconds.
local ms = tonumber(ARGV[1])
local current = redis.call('PTTL', KEYS[1])
if current >= ms then return current end
redis.call('SET', KEYS[1], '1', 'PX', ms)
return ms
