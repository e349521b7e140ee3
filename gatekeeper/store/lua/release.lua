-- release: after forget.lua took a room off the list, free its queue state when nobody is in
-- it (the sequence, head, rate and budget in the stats hash, the joins stream and its cursor,
-- the users' places);
-- the live controls hash stays, and ended sessions keep their own hashes until retention.
-- A room with anyone waiting or active is kept whole: the caller lists it again.
-- KEYS: 1 waiting zset, 2 active zset, 3 room stats hash, 4 joins stream, 5 cursor string,
--       6 waiting-seq hash, 7 pre-queue zset, 8 pre-queue rank hash, 9 users hash
-- ARGV: none
-- Returns 1 when released, 0 when someone is in the room.
if redis.call('ZCARD', KEYS[1]) > 0 or redis.call('ZCARD', KEYS[2]) > 0 then
  return 0
end
redis.call('DEL', KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9])
return 1
