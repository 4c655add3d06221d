-- insert_new: write a record only when no live one exists.
-- KEYS[1] the record; ARGV[1] the value; ARGV[2] TTL in milliseconds, or -1 for none.
-- Returns 1 when written (version 1), 0 when a live record was there.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], 'v', '1', 'd', ARGV[1])
local ttl = tonumber(ARGV[2])
if ttl >= 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return 1
