-- seed: give a room's on-sale event its draw seed and commitment unless it has a seed already,
-- in one step, so that replicas starting together (or an operator and a replica) agree on one
-- seed and the commitment once published never changes.
-- KEYS: 1 room controls hash
-- ARGV: 1 seed (hex), 2 commitment (hex SHA-256 of the seed)
-- Returns the seed in force.
if redis.call('HSETNX', KEYS[1], 'event-seed', ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], 'event-commitment', ARGV[2])
end
return redis.call('HGET', KEYS[1], 'event-seed')
