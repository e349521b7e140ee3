-- grant: one step of the grant loop for one room, atomically:
--   1. expire active sessions whose lease ran out and waiters silent past the waiting timeout
--      (at most ARGV[8] of each per step, oldest first);
--   2. walk the joins stream from the cursor in join order, activating live waiters while
--      active < capacity, up to the batch size; skip entries of sessions that left or expired;
--      in a closed room, end live waiters instead (reason closed), up to the reap limit;
--   3. move the cursor past what was walked and trim the stream behind it.
-- Work per step is bounded (reap limit, batch size x scan factor), whatever the queue length.
-- Session hashes are addressed as ARGV[2] .. id: they are only known once the stream is read,
-- and they carry the room's hash tag, so they live in the same cluster slot as KEYS.
-- A waiter has no session hash (join.lua): the waiting zset, the waiting-seq hash and the stream
-- hold its member; its hash is created here when it is granted (ACTIVE) or expired.
-- Nothing is admitted while the room is paused, queueing all or closed; the
-- new-visitors-per-minute budget caps admissions too. An expired lease ends as claim_timeout
-- or idle_timeout (lapsed in lib.lua), a silent waiter as waiting_timeout.
-- KEYS: 1 joins stream, 2 cursor string, 3 waiting zset, 4 active zset, 5 room stats hash,
--       6 room controls hash, 7 waiting-seq hash, 8 pre-queue zset, 9 pre-queue rank hash
-- With an on-sale event (event_phase in lib.lua): nobody is admitted during the pre-queue; the
-- first step from the start marks the pre-queue drawn; then the pre-queue is admitted first.
-- ARGV: 1 now ("" = TIME), 2 session key prefix, 3 capacity, 4 batch size, 5 waiting timeout,
--       6 claim window, 7 retention, 8 reap limit, 9 scan factor, 10 rate time constant,
--       11 new visitors per minute, 12 room, 13 max session (0 = no cap)
-- Returns {granted ids, expired active, expired waiting, waiting, active, of the expired active
-- those never claimed, of the expired waiting those of a closed room, of the expired active
-- those that reached the session cap}.
local now = clock(ARGV[1])
local prefix, room = ARGV[2], ARGV[12]
local capacity, batch, per_minute, mode = controls(KEYS[6], ARGV[3], ARGV[4], ARGV[11])
local wait_ms, claim_ms, retention = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local limit, scan, tau = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])

local expired_active, unclaimed, limited = 0, 0, 0
local limit_ms = tonumber(ARGV[13])
for _, sid in ipairs(redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now, 'LIMIT', 0, limit)) do
  local skey = prefix .. sid
  local h = redis.call('HMGET', skey, 'status', 'claimed', 'grantedAt')
  if h[1] == 'ACTIVE' then
    local why = expiry_reason(h[2], hard_end(h[3], limit_ms), now)
    finish(skey, why, now, retention)
    expired_active = expired_active + 1
    if why == 'claim_timeout' then unclaimed = unclaimed + 1 end
    if why == 'session_limit' then limited = limited + 1 end
  end
  redis.call('ZREM', KEYS[4], sid)
end

local expired_waiting = 0
local stale = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now - wait_ms, 'LIMIT', 0, limit)
for _, member in ipairs(stale) do
  local seq = redis.call('HGET', KEYS[7], member)
  if seq then
    retire(prefix .. session_of(member, room), 'waiting_timeout', seq, room, now, retention)
    expired_waiting = expired_waiting + 1
  end
  stop_waiting(KEYS[3], KEYS[7], member)
  leave_prequeue(KEYS[8], KEYS[9], member)
end

local granted, closed = {}, 0
local phase, drawn = event_phase(KEYS[6], now)
if phase == 'closed' then mode = 'closed' end
if phase == 'open' and not drawn then
  -- The draw: the pre-queue's order was fixed as it filled (its zset is ordered by rank key);
  -- from now on it is the front of the line and the seed may be published (core/draw.py).
  redis.call('HSET', KEYS[6], 'event-drawn', now)
end
local want = math.min(capacity - redis.call('ZCARD', KEYS[4]), batch)
if (mode ~= 'open' and mode ~= 'passthrough') or phase == 'prequeue' then want = 0 end
local tokens = nil
if want > 0 then
  tokens = bucket(KEYS[5], now, per_minute, room_burst(per_minute))
  if tokens ~= nil then want = math.min(want, math.floor(tokens / 1000)) end
end
-- How many waiters the walk may end its wait for: admitted, or sent away from a closed room.
local quota = want
if mode == 'closed' then quota = limit end

-- End one waiter's wait: admitted, or expired (silent too long, or the room closed). Returns
-- its seq, nil when it was no longer waiting.
local function settle(member, f)
  local sid = session_of(member, room)
  local skey = prefix .. sid
  local seq = redis.call('HGET', KEYS[7], member)
  if not seq then return nil end
  local seen = redis.call('ZSCORE', KEYS[3], member)
  stop_waiting(KEYS[3], KEYS[7], member)
  if not (seen and tonumber(seen) + wait_ms > now) then
    retire(skey, 'waiting_timeout', seq, room, now, retention)
    expired_waiting = expired_waiting + 1
  elseif mode == 'closed' then
    retire(skey, 'closed', seq, room, now, retention)
    expired_waiting, closed = expired_waiting + 1, closed + 1
  else
    -- Not claimed yet (no `claimed` field): the first poll claims it (poll.lua).
    redis.call('HSET', skey, 'status', 'ACTIVE', 'seq', seq, 'eventId', room,
      'userId', f['userId'] or '', 'joinedAt', f['joinedAt'] or now, 'grantedAt', now)
    local lease = capped(now + claim_ms, hard_end(now, limit_ms))
    redis.call('ZADD', KEYS[4], lease, sid)
    redis.call('PEXPIRE', skey, lease - now + retention)
    granted[#granted + 1] = sid
  end
  return seq
end

-- The ordered line goes first, in its zset's order: priority waiters (whose rank keys sort
-- before any other), then an event's pre-queue in drawn order once the event has started; the
-- joins stream is walked only when it is empty, so every later arrival comes after it.
local prequeued, walked = redis.call('ZCARD', KEYS[8]), false
if quota > 0 and prequeued > 0 and phase ~= 'prequeue' then
  walked = true
  for _, item in ipairs(redis.call('ZRANGE', KEYS[8], 0, quota * scan - 1)) do
    local member = string.sub(item, string.find(item, ':', 1, true) + 1)
    redis.call('ZREM', KEYS[8], item)
    redis.call('HDEL', KEYS[9], member)
    settle(member, {})
    if #granted + closed >= quota then break end
  end
  prequeued = redis.call('ZCARD', KEYS[8])
end
if quota > #granted + closed and prequeued == 0 and redis.call('ZCARD', KEYS[3]) > 0 then
  walked = true
  local entries = after_cursor(KEYS[1], KEYS[2], (quota - #granted - closed) * scan)
  local last, head = nil, nil
  for _, entry in ipairs(entries) do
    local f = fields_of(entry)
    local member = f['sessionId']
    if member then
      local seq = settle(member, f)
      if not seq then
        -- One who left or expired while waiting: its terminal hash, if still kept, has the seq.
        seq = redis.call('HGET', prefix .. session_of(member, room), 'seq')
      end
      if seq then head = seq end
    end
    last = entry[1]
    if #granted + closed >= quota then break end
  end
  if last then
    redis.call('SET', KEYS[2], last)
    redis.call('XTRIM', KEYS[1], 'MINID', last)
  end
  if head then redis.call('HSET', KEYS[5], 'head', head) end
end
if walked then
  spend(KEYS[5], now, tokens, #granted)
  if #granted > 0 then
    -- Decaying sum of grants (time constant tau): the ETA's grant rate, see store/base.py.
    local st = redis.call('HMGET', KEYS[5], 'rs', 'rat', 'rsince')
    local sum = tonumber(st[1] or '0') * math.exp(-(now - tonumber(st[2] or now)) / tau)
    redis.call('HSET', KEYS[5], 'rs', tostring(sum + #granted), 'rat', now)
    if not st[3] then redis.call('HSET', KEYS[5], 'rsince', now) end
    redis.call('HINCRBY', KEYS[5], 'granted', #granted)
  end
end
return {granted, expired_active, expired_waiting,
  redis.call('ZCARD', KEYS[3]), redis.call('ZCARD', KEYS[4]), unclaimed, closed, limited}
