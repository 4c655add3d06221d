-- compare_and_swap: write only if the live record still has the expected version.
-- KEYS[1] the record; ARGV[1] the expected version (decimal, compared as a string so no Lua
-- number rounding is involved); ARGV[2] the value; ARGV[3] TTL in milliseconds, or -1 for none.
-- Returns the new version, or 0 on conflict (versions start at 1). A missing or expired record
-- has no version and is a conflict.
if redis.call('HGET', KEYS[1], 'v') ~= ARGV[1] then
  return 0
end
local version = redis.call('HINCRBY', KEYS[1], 'v', 1)
redis.call('HSET', KEYS[1], 'd', ARGV[2])
local ttl = tonumber(ARGV[3])
if ttl >= 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
else
  redis.call('PERSIST', KEYS[1])
end
return version
