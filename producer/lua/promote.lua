-- Move delayed jobs that are due to the consuming end of the ready list, oldest first.
-- KEYS[1]  delayed set           coroq:{Q}:delayed
-- KEYS[2]  ready list            coroq:{Q}:ready
-- ARGV[1]  now (epoch milliseconds)
-- ARGV[2]  at most this many jobs per call
-- Returns {moved, due time of the next delayed job in ms or -1 when none is left}.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, job in ipairs(due) do
  redis.call('ZREM', KEYS[1], job)
  redis.call('RPUSH', KEYS[2], job)
end
local next_job = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local next_due = -1
if next_job[2] then
  next_due = tonumber(next_job[2])
end
return {#due, next_due}
