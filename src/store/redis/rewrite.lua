-- rewrite: replace the value of a live record that still has exactly the expected version and
-- value, keeping its version and its expiry (HSET on an existing key leaves its TTL alone).
-- KEYS[1] the record; ARGV[1] the expected version (decimal, compared as a string); ARGV[2] the
-- expected value; ARGV[3] the new value. Returns 1 when replaced, 0 otherwise (a missing or
-- expired record has no version).
if redis.call('HGET', KEYS[1], 'v') ~= ARGV[1] or redis.call('HGET', KEYS[1], 'd') ~= ARGV[2] then
  return 0
end
redis.call('HSET', KEYS[1], 'd', ARGV[3])
return 1
