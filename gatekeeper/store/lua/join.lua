-- join: create a session; ACTIVE at once when the room has a free place and nobody waits.
-- Nobody is admitted at once while the room is paused or queueing all, or when the
-- new-visitors-per-minute budget is spent; nobody joins a closed room (refused as room_closed,
-- no retry).
-- Deviation from the design's data model, for memory (issue P5: <= 300 B per waiter): a WAITING
-- session has no session hash. A waiter is its member in the waiting zset (score = last seen),
-- its join sequence number in the room's waiting-seq hash (field = member) and its stream entry
-- (sessionId = member, eventId, userId, joinedAt). The member is the id's 22-character token
-- when the id is `<token>.<room>` (the room is in the keys' hash tag), else '.' .. id; see
-- session_of in lib.lua. The session hash is created when the session stops waiting: ACTIVE with
-- its grant, or terminal (status, seq, eventId, endedAt) when it leaves or expires. Sessions
-- that joined at once get their ACTIVE hash here, as before. Waiters queued by an older version
-- (a WAITING hash) are not carried over: they read as unknown and re-join at the back.
-- Turning joins away, before anything is written (Queue.join in store/base.py): a join that
-- would wait when the line holds max-waiting sessions is refused as queue_full; a lazy join
-- that would wait writes nothing and answers a WAITING ticket without a place; a join that
-- writes spends a token of its client's bucket (a hash per client and room that expires once
-- full again), and is refused as rate_limited, with the milliseconds until a token, when none
-- is left. A lazy join admitted at once holds its place for the claim window: its lease grows
-- to the idle timeout when the session is polled (the visitor came back with the cookie), which
-- marks it `claimed` (poll.lua); any other join admitted at once is claimed from the start.
-- KEYS: 1 session hash, 2 joins stream, 3 waiting zset (score = last seen),
--       4 active zset (score = lease expiry), 5 room stats hash, 6 room controls hash,
--       7 waiting-seq hash (member -> join sequence number), 8 the client's join bucket,
--       9 pre-queue zset, 10 pre-queue rank hash (see leave_prequeue in lib.lua),
--       11 users hash (enqueue-token user id -> session id)
-- ARGV: 1 now ("" = TIME), 2 session id, 3 room, 4 user id, 5 capacity,
--       6 waiting timeout, 7 idle timeout, 8 retention, 9 new visitors per minute, 10 member,
--       11 lazy ("1" or ""), 12 max waiting (0 = no cap), 13 client joins per minute
--       (0 = no limit), 14 client join burst, 15 claim window, 16 rank key in the pre-queue
--       (the hex HMAC of the session id under the event's seed; "" = arrival order),
--       17 max session (0 = no cap: see hard_end in lib.lua), 18 user (an enqueue token's
--       user id; "" = none), 19 session key prefix, 20 priority (0 = the ordinary line)
-- One place per user: a join of a user whose session still waits or is admitted answers that
-- session, with its id as a twelfth reply field, and writes nothing. A priority waiter is
-- ranked in the pre-queue zset by `priority_rank` (lib.lua), in front of any drawn order.
-- During an event's pre-queue phase nobody is admitted at once and a join goes to the pre-queue,
-- not the joins stream: the grant step admits the pre-queue first, in drawn order, once the
-- event starts (grant.lua). From the event's end the room is closed.
-- Returns the ticket (see lib.lua), {'REFUSED', reason, retry ms}, or {'RANK', seed} when a
-- shuffled pre-queue join came without its rank key. Idempotent by session id:
-- a retried join changes nothing.
local now = clock(ARGV[1])
local sid, member = ARGV[2], ARGV[10]
local limit = tonumber(ARGV[17])
local user, priority = ARGV[18], tonumber(ARGV[20])

-- A waiter's ticket, placed in the ordered line or the stream (`waiter` in lib.lua).
local function placed(m, seq)
  return waiter(m, seq, KEYS[3], KEYS[4], KEYS[5], KEYS[9], KEYS[10], now)
end

-- The ticket of a session that still holds a place (waiting, or admitted with a lease that
-- has not run out), else nil.
local function held(other)
  local h = redis.call('HMGET', ARGV[19] .. other, 'status', 'seq', 'grantedAt')
  if h[1] == 'ACTIVE' then
    local lease = redis.call('ZSCORE', KEYS[4], other)
    if lease and tonumber(lease) > now then
      return ticket('ACTIVE', h[2], KEYS[3], KEYS[4], KEYS[5], now, nil, false,
        hard_end(h[3], limit))
    end
  elseif not h[1] then
    local m = member_of(other, ARGV[3])
    local seq = redis.call('HGET', KEYS[7], m)
    if seq then return placed(m, seq) end
  end
  return nil
end

if user ~= '' then
  local other = redis.call('HGET', KEYS[11], user)
  local t = other and other ~= sid and held(other)
  if t then
    t[12] = other
    return t
  end
end
local current = redis.call('HMGET', KEYS[1], 'status', 'seq', 'reason', 'grantedAt')
if current[1] then
  return ticket(current[1], current[2], KEYS[3], KEYS[4], KEYS[5], now, current[3], false,
    hard_end(current[4], limit))
end
local waiting_seq = redis.call('HGET', KEYS[7], member)
if waiting_seq then
  return placed(member, waiting_seq)
end

local capacity, _, per_minute, mode = controls(KEYS[6], ARGV[5], 0, ARGV[9])
local phase = event_phase(KEYS[6], now)
if mode == 'closed' or phase == 'closed' then
  return {'REFUSED', 'room_closed', 0}
end
local prequeue = phase == 'prequeue'
local tokens = bucket(KEYS[5], now, per_minute, room_burst(per_minute))
local waiting = redis.call('ZCARD', KEYS[3])
local at_once = (mode == 'open' or mode == 'passthrough') and (tokens == nil or tokens >= 1000)
  and waiting == 0 and redis.call('ZCARD', KEYS[4]) < capacity and not prequeue
if not at_once then
  local max_waiting = tonumber(ARGV[12])
  if max_waiting > 0 and waiting >= max_waiting then
    return {'REFUSED', 'queue_full', 0}
  end
  if ARGV[11] == '1' then
    return ticket('WAITING', false, KEYS[3], KEYS[4], KEYS[5], now)
  end
end
if prequeue and priority == 0 and ARGV[16] == '' and redis.call('HGET', KEYS[6], 'event-shuffle') == '1' then
  -- The caller did not know the event yet (it learns of it within a tick): it computes the
  -- rank key from this seed and joins again. Nothing was written.
  return {'RANK', redis.call('HGET', KEYS[6], 'event-seed') or ''}
end
local client_rate = tonumber(ARGV[13])
local client_burst = tonumber(ARGV[14]) * 1000
local client_tokens = bucket(KEYS[8], now, client_rate, client_burst)
if client_tokens ~= nil then
  if client_tokens < 1000 then
    return {'REFUSED', 'rate_limited', math.ceil((1000 - client_tokens) * 60 / client_rate)}
  end
  spend(KEYS[8], now, client_tokens, 1)
  -- Gone once full again: a client's bucket costs memory only while it is being spent.
  local full_in = math.ceil((client_burst - client_tokens + 1000) * 60 / client_rate)
  redis.call('PEXPIRE', KEYS[8], math.max(1, full_in))
end

local seq = redis.call('HINCRBY', KEYS[5], 'seq', 1)
local status = 'WAITING'
if user ~= '' then redis.call('HSET', KEYS[11], user, sid) end
if at_once then
  status = 'ACTIVE'
  spend(KEYS[5], now, tokens, 1)
  -- Nobody waits, so nobody is ahead of later joiners either: move the position base.
  redis.call('HSET', KEYS[5], 'head', seq)
  local lease = tonumber(ARGV[7])
  if ARGV[11] == '1' then
    lease = tonumber(ARGV[15])
  else
    redis.call('HSET', KEYS[1], 'claimed', 1)
  end
  redis.call('HSET', KEYS[1], 'status', status, 'seq', seq, 'eventId', ARGV[3],
    'userId', ARGV[4], 'joinedAt', now, 'grantedAt', now)
  local ends = hard_end(now, limit)
  lease = capped(now + lease, ends) - now
  redis.call('ZADD', KEYS[4], now + lease, sid)
  redis.call('PEXPIRE', KEYS[1], lease + tonumber(ARGV[8]))
  return ticket(status, seq, KEYS[3], KEYS[4], KEYS[5], now, nil, false, ends)
elseif prequeue or priority > 0 then
  redis.call('ZADD', KEYS[3], now, member)
  redis.call('HSET', KEYS[7], member, seq)
  local rank = ARGV[16]
  if priority > 0 then
    rank = priority_rank(priority, seq)
  elseif rank == '' then
    rank = string.format('%020d', seq)  -- shuffle off: arrival order
  end
  redis.call('ZADD', KEYS[9], 0, rank .. ':' .. member)
  redis.call('HSET', KEYS[10], member, rank)
  return placed(member, seq)
else
  redis.call('ZADD', KEYS[3], now, member)
  redis.call('HSET', KEYS[7], member, seq)
  redis.call('XADD', KEYS[2], '*', 'sessionId', member, 'eventId', ARGV[3], 'userId', ARGV[4],
    'joinedAt', now)
end
return placed(member, seq)
