-- leave: release a session's place or queue entry. Idempotent: leaving twice changes nothing.
-- An operator's revoke is the same step with reason revoked (EXPIRED) instead of left (LEFT).
-- A waiter has no session hash: it is found by its member in the waiting-seq hash (join.lua).
-- KEYS: 1 session hash, 2 waiting zset, 3 active zset, 4 waiting-seq hash, 5 pre-queue zset,
--       6 pre-queue rank hash
-- ARGV: 1 now ("" = TIME), 2 session id, 3 retention, 4 end reason (left or revoked),
--       5 member, 6 room
-- Returns 1 when the session exists, 0 when it is unknown or retired.
local now = clock(ARGV[1])
local sid, member = ARGV[2], ARGV[5]
local retention = tonumber(ARGV[3])
local h = redis.call('HMGET', KEYS[1], 'status', 'endedAt')
local status = h[1]
if not status then
  local seq = redis.call('HGET', KEYS[4], member)
  if not seq then
    return 0
  end
  stop_waiting(KEYS[2], KEYS[4], member)
  leave_prequeue(KEYS[5], KEYS[6], member)
  retire(KEYS[1], ARGV[4], seq, ARGV[6], now, retention)
elseif status == 'ACTIVE' then
  redis.call('ZREM', KEYS[3], sid)
  finish(KEYS[1], ARGV[4], now, retention)
elseif tonumber(h[2] or '0') + retention <= now then
  redis.call('DEL', KEYS[1])
  return 0
end
return 1
