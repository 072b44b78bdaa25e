-- Record that a job starts an attempt; every start counts, recovered ones included.
-- KEYS[1]  job record hash       coroq:{Q}:job:<id>
-- ARGV[1]  worker id
-- ARGV[2]  started_at (epoch seconds)
-- ARGV[3]  record TTL (seconds)
-- ARGV[4]  task name
-- ARGV[5]  queue name
-- ARGV[6]  max_attempts in force for this job
-- ARGV[7]  enqueued_at as the producer stamped it ('' when unknown)
-- Returns the attempt number that starts now.
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'status', 'running', 'worker', ARGV[1], 'started_at', ARGV[2],
  'task', ARGV[4], 'queue', ARGV[5], 'max_attempts', ARGV[6])
if ARGV[7] ~= '' then
  redis.call('HSET', KEYS[1], 'enqueued_at', ARGV[7])
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
return attempts
