-- take: read and delete a record in one step, so a single-use value is handed out once.
-- KEYS[1] the record. Returns its value, or nil when there was no live record.
local value = redis.call('HGET', KEYS[1], 'd')
redis.call('DEL', KEYS[1])
return value
