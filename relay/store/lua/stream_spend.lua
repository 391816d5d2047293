-- Spend one request of the shared budget on reconnecting a stream (budget.lua, prepended):
-- each connection counts like a poll. Nothing is spent while every worker is paused.
--
-- KEYS: window log, pacing key, pause key
-- ARGV: limit, window, pace, burst
-- Returns: 1 when the request may go now, else 0
if redis.call('PTTL', KEYS[3]) > 0 then return 0 end
local window = tonumber(ARGV[2])
local allowance, _, pace = budget_allowance(KEYS[1], KEYS[2], tonumber(ARGV[1]), window,
  tonumber(ARGV[3]), tonumber(ARGV[4]))
if allowance <= 0 then return 0 end
budget_take(KEYS[1], KEYS[2], 1, window, pace)
return 1
