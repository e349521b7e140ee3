-- poll: read a session and record that its owner is alive.
-- A waiter's heartbeat keeps its place; an active visitor's poll renews the idle lease (and so
-- claims a fresh grant: the hash gets `claimed`, see lapsed in lib.lua). A waiter silent past
-- the waiting timeout (waiting_timeout), a waiter of a closed room (closed), or an active
-- session past its lease (claim_timeout or idle_timeout) is expired here even if no grant step
-- ran since. Admitted visitors keep renewing in a closed room.
-- A waiter has no session hash: it is found by its member in the waiting-seq hash (join.lua).
-- KEYS: 1 session hash, 2 waiting zset, 3 active zset, 4 room stats hash, 5 waiting-seq hash,
--       6 room controls hash, 7 pre-queue zset, 8 pre-queue rank hash
-- A waiter's `ahead`: see `waiter` in lib.lua (the pre-queue and priority line go first).
-- ARGV: 1 now ("" = TIME), 2 session id, 3 waiting timeout, 4 idle timeout, 5 retention,
--       6 member, 7 room, 8 max session (0 = no cap)
-- Returns the ticket (see lib.lua), or nil for an unknown or retired session.
local now = clock(ARGV[1])
local sid, member = ARGV[2], ARGV[6]
local wait_ms, idle_ms, retention = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local h = redis.call('HMGET', KEYS[1], 'status', 'seq', 'endedAt', 'reason', 'claimed',
  'grantedAt')
local ends = hard_end(h[6], tonumber(ARGV[8]))
local status, seq, reason, ended = h[1], h[2], h[4], false
if not status then
  seq = redis.call('HGET', KEYS[5], member)
  if not seq then
    return nil
  end
  status = 'WAITING'
  local seen = redis.call('ZSCORE', KEYS[2], member)
  local alive = seen and tonumber(seen) + wait_ms > now
  local closed = redis.call('HGET', KEYS[6], 'mode') == 'closed'
    or event_phase(KEYS[6], now) == 'closed'
  if alive and not closed then
    redis.call('ZADD', KEYS[2], 'XX', now, member)
    return waiter(member, seq, KEYS[2], KEYS[3], KEYS[4], KEYS[7], KEYS[8], now)
  else
    reason = 'waiting_timeout'
    if alive then reason = 'closed' end
    stop_waiting(KEYS[2], KEYS[5], member)
    leave_prequeue(KEYS[7], KEYS[8], member)
    retire(KEYS[1], reason, seq, ARGV[7], now, retention)
    status, ended = 'EXPIRED', true
  end
elseif status == 'ACTIVE' then
  local lease = redis.call('ZSCORE', KEYS[3], sid)
  if lease and tonumber(lease) > now and not (ends and now >= ends) then
    local renewed = capped(math.max(tonumber(lease), now + idle_ms), ends)
    redis.call('ZADD', KEYS[3], 'XX', renewed, sid)
    if not h[5] then redis.call('HSET', KEYS[1], 'claimed', 1) end
    redis.call('PEXPIRE', KEYS[1], renewed - now + retention)
  else
    redis.call('ZREM', KEYS[3], sid)
    reason = expiry_reason(h[5], ends, now)
    finish(KEYS[1], reason, now, retention)
    status, ended = 'EXPIRED', true
  end
elseif tonumber(h[3] or '0') + retention <= now then
  redis.call('DEL', KEYS[1])
  return nil
end
return ticket(status, seq, KEYS[2], KEYS[3], KEYS[4], now, reason, ended, ends)
