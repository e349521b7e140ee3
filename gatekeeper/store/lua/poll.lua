-- poll: read a session and record that its owner is alive.
-- A waiter's heartbeat keeps its place; an active visitor's poll renews the idle lease (and so
-- claims a fresh grant). A waiter silent past the waiting timeout, or an active session past
-- its lease, is expired here even if no grant step ran since.
-- KEYS: 1 session hash, 2 waiting zset, 3 active zset, 4 room stats hash
-- ARGV: 1 now ("" = TIME), 2 session id, 3 waiting timeout, 4 idle timeout, 5 retention
-- Returns the ticket (see lib.lua), or nil for an unknown or retired session.
local now = clock(ARGV[1])
local sid = ARGV[2]
local wait_ms, idle_ms, retention = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local h = redis.call('HMGET', KEYS[1], 'status', 'seq', 'endedAt')
local status = h[1]
if not status then
  return nil
end
if status == 'WAITING' then
  local seen = redis.call('ZSCORE', KEYS[2], sid)
  if seen and tonumber(seen) + wait_ms > now then
    redis.call('ZADD', KEYS[2], 'XX', now, sid)
    redis.call('PEXPIRE', KEYS[1], wait_ms + retention)
  else
    redis.call('ZREM', KEYS[2], sid)
    finish(KEYS[1], 'EXPIRED', now, retention)
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
return ticket(status, h[2], KEYS[2], KEYS[3], KEYS[4], now)
