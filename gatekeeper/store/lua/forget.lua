-- forget: take a room off the grant loop's room list when it was last listed at or before the
-- cutoff. Only the global room set is touched: in a Redis Cluster a script may use keys of one
-- slot alone, so the room's own keys are checked next, by release.lua (and a join that finds
-- the room empty lists it again at once, so no one is ever left off the list).
-- KEYS: 1 room set (member = room, score = last listing in seconds)
-- ARGV: 1 room, 2 cutoff (seconds)
-- Returns 1 when the room was taken off the list, else 0.
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) <= tonumber(ARGV[2]) then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 1
end
return 0
