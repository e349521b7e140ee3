-- counts: a room's live figures in one consistent read.
-- KEYS: 1 waiting zset, 2 active zset, 3 room stats hash, 4 joins stream, 5 cursor string,
--       6 waiting-seq hash
-- ARGV: 1 now ("" = TIME)
-- Returns waiting, active, rate sum, rate time, rate start, now, and the join time of the
-- first live waiter among the next 10 queue entries (0 if none: an estimate, cheap to read).
-- A waiter is still queued while its member is in the waiting-seq hash (join.lua); its join
-- time is in its stream entry.
local now = clock(ARGV[1])
local st = redis.call('HMGET', KEYS[3], 'rs', 'rat', 'rsince')
local oldest = 0
for _, entry in ipairs(after_cursor(KEYS[4], KEYS[5], 10)) do
  local f = fields_of(entry)
  if f['sessionId'] and redis.call('HEXISTS', KEYS[6], f['sessionId']) == 1 then
    oldest = tonumber(f['joinedAt'] or '0')
  end
  if oldest > 0 then break end
end
return {redis.call('ZCARD', KEYS[1]), redis.call('ZCARD', KEYS[2]), st[1] or '0', st[2] or '0',
  st[3] or '0', now, oldest}
