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

-- A session reached LEFT or EXPIRED: keep it readable for the retention period, then let Redis
-- drop it. endedAt lets reads hide it on time even when a test clock runs ahead of Redis.
local function finish(skey, status, now, retention)
  redis.call('HSET', skey, 'status', status, 'endedAt', now)
  redis.call('PEXPIRE', skey, retention)
end

-- The reply shared by join and poll: status, ahead, waiting, active, rate sum, rate time,
-- rate start, now. `ahead` counts joins between the grant cursor and this session, capped by
-- the live waiting count (an upper-bound estimate; exact when nobody ahead left).
local function ticket(status, seq, k_waiting, k_active, k_stats, now)
  local waiting = redis.call('ZCARD', k_waiting)
  local active = redis.call('ZCARD', k_active)
  local st = redis.call('HMGET', k_stats, 'head', 'rs', 'rat', 'rsince')
  local ahead = 0
  if status == 'WAITING' then
    ahead = tonumber(seq) - tonumber(st[1] or '0') - 1
    if ahead > waiting - 1 then ahead = waiting - 1 end
    if ahead < 0 then ahead = 0 end
  end
  return {status, ahead, waiting, active, st[2] or '0', st[3] or '0', st[4] or '0', now}
end
