-- A hint (Varg's own webhook, relay/api/ingest.py): poll this job at once. Nothing else: the
-- poll is the source of truth, so a forged or replayed hint can change no status by itself.
-- A hint already taken (the same signature) is ignored; a watch not active, or on a stream
-- (which sees the change itself), needs nothing. A poll in flight may have been sent before
-- the change: the job is marked `hinted`, and poll.lua makes it due again at once after that
-- poll's write-back. Otherwise the job is due at once, even within RELAY_POLL_MIN_INTERVAL of
-- its last poll (a verified, unreplayed webhook says it changed), and first in line (`urgent`).
--
-- KEYS: due
-- ARGV: job_id, min_interval, digest of the webhook's signature, seconds to remember it
-- Returns: 'polled' (made due), 'replay', 'unwatched', or 'leased'
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local job_id = ARGV[1]
if not redis.call('SET', K.hint_seen .. ARGV[3], '1', 'NX', 'EX', ARGV[4]) then
  return 'replay'
end
local wkey = K.watch .. job_id
local w = redis.call('HMGET', wkey, 'active', 'lease', 'last_polled_at', 'stream')
if w[1] ~= '1' then return 'unwatched' end
if w[2] then
  if not w[4] then redis.call('HSET', wkey, 'hinted', '1') end
  return 'leased'
end
redis.call('ZADD', KEYS[1], 'LT', now, job_id)
redis.call('HSET', wkey, 'urgent', '1')
return 'polled'
