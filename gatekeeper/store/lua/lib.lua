-- Shared helpers, prepended to every script when it is loaded.
-- Times are integer milliseconds. ARGV[1] is the caller's clock ("" = use Redis TIME, the one
-- clock all replicas share; tests pass their own).

local function clock(arg)
  if arg ~= nil and arg ~= '' then
    return tonumber(arg)
  end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- A session ended for `reason` (an `EndReason` value, store/base.py): LEFT when it left, else
-- EXPIRED. Keep it readable for the retention period, then let Redis drop it. endedAt lets
-- reads hide it on time even when a test clock runs ahead of Redis.
local function finish(skey, reason, now, retention)
  local status = 'EXPIRED'
  if reason == 'left' then status = 'LEFT' end
  redis.call('HSET', skey, 'status', status, 'reason', reason, 'endedAt', now)
  redis.call('PEXPIRE', skey, retention)
end

-- Why an admitted session whose lease ran out ends: its hash has `claimed` once it was polled
-- after its grant (its lease then runs on the idle timeout), else the place was never claimed.
local function lapsed(claimed)
  if claimed then return 'idle_timeout' end
  return 'claim_timeout'
end

-- An admitted session's hard end (`max-session` after its grant), nil without a cap: leases
-- never reach past it, and a lease that runs out there ends the session as session_limit.
local function hard_end(granted_at, limit)
  if limit > 0 and granted_at then return tonumber(granted_at) + limit end
  return nil
end

local function capped(lease, ends)
  if ends and lease > ends then return ends end
  return lease
end

-- Why an admitted session whose lease ran out at `now` ends.
local function expiry_reason(claimed, ends, now)
  if ends and now >= ends then return 'session_limit' end
  return lapsed(claimed)
end

-- A waiter has no session hash (see join.lua): it is its waiting-set member, its join sequence
-- number in the room's waiting-seq hash and its stream entry, all under one compact member
-- name. Both go together: whatever ends the wait removes the member from both.
local function stop_waiting(k_waiting, k_seq, member)
  redis.call('ZREM', k_waiting, member)
  redis.call('HDEL', k_seq, member)
end

-- A waiter left or expired: its session hash is created now, terminal, with what is still known
-- (the user id and join time were only in the stream entry) and kept for the retention period.
local function retire(skey, reason, seq, room, now, retention)
  redis.call('HSET', skey, 'seq', seq, 'eventId', room)
  finish(skey, reason, now, retention)
end

-- The session id a member names: a bare token stands for `<token>.<room>`; any other id is
-- stored whole behind a '.' (tokens never contain one), so decoding is never ambiguous.
local function session_of(member, room)
  if string.sub(member, 1, 1) == '.' then
    return string.sub(member, 2)
  end
  return member .. '.' .. room
end

-- The member of a session id of `room` (`RedisKeys.member`): the bare token of
-- `<token>.<room>`, else the whole id behind a '.'.
local function member_of(sid, room)
  local token = string.match(sid, '^([^.]*)%.')
  if token and string.sub(sid, #token + 2) == room then return token end
  return '.' .. sid
end

-- The rank key of a priority waiter (`ranks.priority_rank`): '!' sorts before every drawn
-- or arrival-order key, higher priorities first, join order within one.
local function priority_rank(priority, seq)
  return string.format('!%02d%020d', 99 - priority, seq)
end

-- The joins stream's entries after the grant cursor (not yet walked), oldest first, at most
-- `count`.
local function after_cursor(k_joins, k_cursor, count)
  local cursor = redis.call('GET', k_cursor)
  local start = '-'
  if cursor then start = '(' .. cursor end
  return redis.call('XRANGE', k_joins, start, '+', 'COUNT', count)
end

-- A stream entry's field/value list as a table.
local function fields_of(entry)
  local fields, f = entry[2], {}
  for i = 1, #fields, 2 do f[fields[i]] = fields[i + 1] end
  return f
end

-- The reply shared by join and poll: status, ahead, waiting, active, rate sum, rate time,
-- rate start, now, end reason ('' unless ended), ended (1 when this call ended the session),
-- an ACTIVE session's hard end ('' without a cap).
-- `ahead` counts joins between the grant cursor and this session, capped by the live waiting
-- count (an upper-bound estimate; exact when nobody ahead left). A WAITING ticket without a
-- seq is not in line (a lazy join that wrote nothing): everyone is ahead.
local function ticket(status, seq, k_waiting, k_active, k_stats, now, reason, ended, ends)
  local waiting = redis.call('ZCARD', k_waiting)
  local active = redis.call('ZCARD', k_active)
  local st = redis.call('HMGET', k_stats, 'head', 'rs', 'rat', 'rsince')
  local ahead = 0
  if status == 'WAITING' and not seq then
    ahead = waiting
  elseif status == 'WAITING' then
    ahead = tonumber(seq) - tonumber(st[1] or '0') - 1
    if ahead > waiting - 1 then ahead = waiting - 1 end
    if ahead < 0 then ahead = 0 end
  end
  local just = 0
  if ended then just = 1 end
  local hard = ''
  if status == 'ACTIVE' and ends then hard = ends end
  return {status, ahead, waiting, active, st[2] or '0', st[3] or '0', st[4] or '0', now,
    reason or '', just, hard}
end

-- A waiter's ticket. One in the ordered line in front of the stream (a priority waiter, or one
-- in an event's pre-queue) is `ahead` of as many as its rank there; one in the stream is also
-- behind everyone in the priority line.
local function waiter(member, seq, k_waiting, k_active, k_stats, k_prequeue, k_rank, now)
  local t = ticket('WAITING', seq, k_waiting, k_active, k_stats, now)
  local rank = redis.call('HGET', k_rank, member)
  if rank then
    t[2] = redis.call('ZRANK', k_prequeue, rank .. ':' .. member) or t[2]
  else
    local first = redis.call('ZLEXCOUNT', k_prequeue, '[!', '(0')
    t[2] = math.max(0, math.min(t[2] + first, t[3] - 1))
  end
  return t
end

-- A room's on-sale event lives in its control hash (fields: EventField in store/base.py). The
-- phase at `now` ('' without an event, 'before', 'prequeue', 'open' or 'closed') and when the
-- pre-queue was drawn (nil until then); see gatekeeper/core/events.py.
local function event_phase(k_control, now)
  local e = redis.call('HMGET', k_control, 'event-opens', 'event-starts', 'event-ends',
    'event-drawn')
  local opens, starts, ends = tonumber(e[1]), tonumber(e[2]), tonumber(e[3])
  if not starts then return '', e[4] end
  if ends and now >= ends then return 'closed', e[4] end
  if now >= starts then return 'open', e[4] end
  if now >= (opens or starts) then return 'prequeue', e[4] end
  return 'before', e[4]
end

-- The pre-queue: a zset whose scores are all 0, so that it is ordered by member, and a member
-- is `<rank key>:<waiter member>`: drawn order is the documented rule (hex rank key ascending);
-- the hash beside it maps a waiter's member to its rank key.
local function leave_prequeue(k_prequeue, k_rank, member)
  local rank = redis.call('HGET', k_rank, member)
  if rank then
    redis.call('ZREM', k_prequeue, rank .. ':' .. member)
    redis.call('HDEL', k_rank, member)
  end
end

-- Live room controls (set by operators, shared by every replica) override the configured
-- numbers passed in ARGV. Returns capacity, batch size, new visitors per minute, mode. The
-- field names are the values of `Control` (store/base.py), in its order.
local function controls(k_control, capacity, batch, per_minute)
  local c = redis.call('HMGET', k_control, 'capacity', 'batch-size', 'per-minute', 'mode')
  return tonumber(c[1] or capacity), tonumber(c[2] or batch), tonumber(c[3] or per_minute),
    c[4] or 'open'
end

-- A join limit is a token bucket in a hash (fields tb, tbat), counted in milli-tokens so that
-- both backends count in exact integers: `per_minute` tokens a minute, at most `burst`
-- milli-tokens. nil when there is no limit.
local function bucket(key, now, per_minute, burst)
  if per_minute <= 0 then
    return nil
  end
  local st = redis.call('HMGET', key, 'tb', 'tbat')
  local tokens = tonumber(st[1] or burst)
  local elapsed = now - tonumber(st[2] or now)
  if elapsed > 0 then
    tokens = math.min(burst, tokens + math.floor(elapsed * per_minute / 60))
  end
  return tokens
end

local function spend(key, now, tokens, used)
  if tokens ~= nil then
    redis.call('HSET', key, 'tb', tokens - used * 1000, 'tbat', now)
  end
end

-- The room's new-visitors-per-minute bucket lives in its stats hash. Its burst is five
-- seconds' worth of admissions (at least one), so admissions spread over the minute.
local function room_burst(per_minute)
  return math.max(1, math.ceil(per_minute / 12)) * 1000
end
