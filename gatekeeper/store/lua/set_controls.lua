-- set_controls: clear, then set, fields of a room's live controls hash in one atomic step.
-- A script rather than a MULTI/EXEC pipeline: it runs the same on one Redis and on a cluster
-- (routed by its key). The fields are the ones `controls` in lib.lua reads.
-- KEYS: 1 room controls hash
-- ARGV: 1 number of fields to clear, then those fields, then field/value pairs to set
-- Returns 0.
local n = tonumber(ARGV[1])
if n > 0 then redis.call('HDEL', KEYS[1], unpack(ARGV, 2, n + 1)) end
if #ARGV > n + 1 then redis.call('HSET', KEYS[1], unpack(ARGV, n + 2)) end
return 0
