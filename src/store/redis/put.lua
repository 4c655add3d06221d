-- put: write a record unconditionally.
-- KEYS[1] the record; ARGV[1] the value; ARGV[2] TTL in milliseconds, or -1 for none.
-- Returns the new version: the live record's + 1, or 1 when there is none (Redis has already
-- dropped an expired key before HINCRBY sees it, so an expired record counts as none).
local version = redis.call('HINCRBY', KEYS[1], 'v', 1)
redis.call('HSET', KEYS[1], 'd', ARGV[1])
local ttl = tonumber(ARGV[2])
if ttl >= 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
else
  redis.call('PERSIST', KEYS[1])
end
return version
