-- join: create a session; ACTIVE at once when the room has a free place and nobody waits.
-- Nobody is admitted at once while the room is paused or queueing all, or when the
-- new-visitors-per-minute budget is spent.
-- Deviation from the design's data model, for memory (issue P5: <= 300 B per waiter): a WAITING
-- session has no session hash. A waiter is its member in the waiting zset (score = last seen),
-- its join sequence number in the room's waiting-seq hash (field = member) and its stream entry
-- (sessionId = member, eventId, userId, joinedAt). The member is the id's 22-character token
-- when the id is `<token>.<room>` (the room is in the keys' hash tag), else '.' .. id; see
-- session_of in lib.lua. The session hash is created when the session stops waiting: ACTIVE with
-- its grant, or terminal (status, seq, eventId, endedAt) when it leaves or expires. Sessions
-- that joined at once get their ACTIVE hash here, as before. Waiters queued by an older version
-- (a WAITING hash) are not carried over: they read as unknown and re-join at the back.
-- KEYS: 1 session hash, 2 joins stream, 3 waiting zset (score = last seen),
--       4 active zset (score = lease expiry), 5 room stats hash, 6 room controls hash,
--       7 waiting-seq hash (member -> join sequence number)
-- ARGV: 1 now ("" = TIME), 2 session id, 3 room, 4 user id, 5 capacity,
--       6 waiting timeout, 7 idle timeout, 8 retention, 9 new visitors per minute, 10 member
-- Returns the ticket (see lib.lua). Idempotent by session id: a retried join changes nothing.
local now = clock(ARGV[1])
local sid, member = ARGV[2], ARGV[10]
local current = redis.call('HMGET', KEYS[1], 'status', 'seq')
if current[1] then
  return ticket(current[1], current[2], KEYS[3], KEYS[4], KEYS[5], now)
end
local waiting_seq = redis.call('HGET', KEYS[7], member)
if waiting_seq then
  return ticket('WAITING', waiting_seq, KEYS[3], KEYS[4], KEYS[5], now)
end

local seq = redis.call('HINCRBY', KEYS[5], 'seq', 1)
local capacity, _, per_minute, mode = controls(KEYS[6], ARGV[5], 0, ARGV[9])
local tokens = bucket(KEYS[5], now, per_minute)
local status = 'WAITING'
if (mode == 'open' or mode == 'passthrough') and (tokens == nil or tokens >= 1000)
    and redis.call('ZCARD', KEYS[3]) == 0 and redis.call('ZCARD', KEYS[4]) < capacity then
  status = 'ACTIVE'
  spend(KEYS[5], now, tokens, 1)
end
if status == 'ACTIVE' then
  -- Nobody waits, so nobody is ahead of later joiners either: move the position base.
  redis.call('HSET', KEYS[5], 'head', seq)
  redis.call('HSET', KEYS[1], 'status', status, 'seq', seq, 'eventId', ARGV[3],
    'userId', ARGV[4], 'joinedAt', now, 'grantedAt', now)
  redis.call('ZADD', KEYS[4], now + tonumber(ARGV[7]), sid)
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[7]) + tonumber(ARGV[8]))
else
  redis.call('ZADD', KEYS[3], now, member)
  redis.call('HSET', KEYS[7], member, seq)
  redis.call('XADD', KEYS[2], '*', 'sessionId', member, 'eventId', ARGV[3], 'userId', ARGV[4],
    'joinedAt', now)
end
return ticket(status, seq, KEYS[3], KEYS[4], KEYS[5], now)
