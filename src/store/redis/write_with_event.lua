-- write_with_event: one record write and, only when it applies, an event record, in one script
-- (so atomically; on a cluster Redis runs it only when both keys are in one slot).
-- KEYS[1] the record; KEYS[2] the event record (never the same key: the caller refuses that).
-- ARGV[1] the write: 'put', 'cas', 'insert_new' or 'delete'; ARGV[2] the expected version for
-- 'cas' (decimal, compared as a string, as in compare_and_swap.lua), unused otherwise; ARGV[3] the
-- record's value; ARGV[4] its TTL in milliseconds, or -1 for none; ARGV[5] the event's value;
-- ARGV[6] its TTL in milliseconds, or -1 for none.
-- Returns the record's new version (0 for a delete), or -1 when the write's condition failed and
-- nothing was written. Each write does what its own script does (put.lua, compare_and_swap.lua,
-- insert_new.lua, DEL), the event what put.lua does.
--
-- Redis does not undo the writes of a script that fails halfway, so everything that could make
-- a later command fail is checked before the first write: the write must be one of the four, and
-- the event key absent or a record (a hash whose version HINCRBY can bump). The record's own key
-- needs no check: the first command on it fails before anything is written, or nothing fails.
local op = ARGV[1]
if op ~= 'put' and op ~= 'cas' and op ~= 'insert_new' and op ~= 'delete' then
  return redis.error_reply('write_with_event: unknown write ' .. tostring(op))
end
-- HGET itself fails (WRONGTYPE) when the key holds something other than a hash.
local event_version = redis.call('HGET', KEYS[2], 'v')
if event_version and not (string.match(event_version, '^[0-9]+$') and #event_version <= 18) then
  return redis.error_reply('write_with_event: the event key holds a record whose version is not a small integer')
end

local function expire(key, ttl_arg)
  local ttl = tonumber(ttl_arg)
  if ttl >= 0 then
    redis.call('PEXPIRE', key, ttl)
  else
    redis.call('PERSIST', key)
  end
end

local version
if op == 'put' then
  version = redis.call('HINCRBY', KEYS[1], 'v', 1)
  redis.call('HSET', KEYS[1], 'd', ARGV[3])
  expire(KEYS[1], ARGV[4])
elseif op == 'cas' then
  if redis.call('HGET', KEYS[1], 'v') ~= ARGV[2] then
    return -1
  end
  version = redis.call('HINCRBY', KEYS[1], 'v', 1)
  redis.call('HSET', KEYS[1], 'd', ARGV[3])
  expire(KEYS[1], ARGV[4])
elseif op == 'insert_new' then
  if redis.call('EXISTS', KEYS[1]) == 1 then
    return -1
  end
  redis.call('HSET', KEYS[1], 'v', '1', 'd', ARGV[3])
  version = 1
  if tonumber(ARGV[4]) >= 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[4])
  end
else
  if redis.call('DEL', KEYS[1]) == 0 then
    return -1
  end
  version = 0
end

redis.call('HINCRBY', KEYS[2], 'v', 1)
redis.call('HSET', KEYS[2], 'd', ARGV[5])
expire(KEYS[2], ARGV[6])
return version
