-- list: put a room on the grant loop's room list (or move its last listing forward). A script,
-- not a plain ZADD, so that it runs at maxmemory too (see scripts.py): forget.lua may have just
-- taken off a room that still has people in it, and it must go back whatever the memory.
-- KEYS: 1 room set (member = room, score = last listing in seconds)
-- ARGV: 1 room, 2 now (seconds)
-- Returns 1.
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
return 1
