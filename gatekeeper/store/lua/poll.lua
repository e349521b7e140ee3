-- poll: read a session and record that its owner is alive.
-- A waiter's heartbeat keeps its place; an active visitor's poll renews the idle lease (and so
-- claims a fresh grant). A waiter silent past the waiting timeout, or an active session past
-- its lease, is expired here even if no grant step ran since.
-- A waiter has no session hash: it is found by its member in the waiting-seq hash (join.lua).
-- KEYS: 1 session hash, 2 waiting zset, 3 active zset, 4 room stats hash, 5 waiting-seq hash
-- ARGV: 1 now ("" = TIME), 2 session id, 3 waiting timeout, 4 idle timeout, 5 retention,
--       6 member, 7 room
-- Returns the ticket (see lib.lua), or nil for an unknown or retired session.
local now = clock(ARGV[1])
local sid, member = ARGV[2], ARGV[6]
local wait_ms, idle_ms, retention = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local h = redis.call('HMGET', KEYS[1], 'status', 'seq', 'endedAt')
local status, seq = h[1], h[2]
if not status then
  seq = redis.call('HGET', KEYS[5], member)
  if not seq then
    return nil
  end
  status = 'WAITING'
  local seen = redis.call('ZSCORE', KEYS[2], member)
  if seen and tonumber(seen) + wait_ms > now then
    redis.call('ZADD', KEYS[2], 'XX', now, member)
  else
    stop_waiting(KEYS[2], KEYS[5], member)
    retire(KEYS[1], 'EXPIRED', seq, ARGV[7], now, retention)
    status = 'EXPIRED'
  end
elseif status == 'ACTIVE' then
  local lease = redis.call('ZSCORE', KEYS[3], sid)
  if lease and tonumber(lease) > now then
    local renewed = math.max(tonumber(lease), now + idle_ms)
    redis.call('ZADD', KEYS[3], 'XX', renewed, sid)
    redis.call('PEXPIRE', KEYS[1], renewed - now + retention)
  else
    redis.call('ZREM', KEYS[3], sid)
    finish(KEYS[1], 'EXPIRED', now, retention)
    status = 'EXPIRED'
  end
elseif tonumber(h[3] or '0') + retention <= now then
  redis.call('DEL', KEYS[1])
  return nil
end
return ticket(status, seq, KEYS[2], KEYS[3], KEYS[4], now)
