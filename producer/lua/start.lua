-- Record that jobs start an attempt; every start counts, recovered ones included. One call
-- records a whole batch taken together.
-- KEYS[i]  job record hash of job i      coroq:{Q}:job:<id>
-- ARGV[1]  worker id
-- ARGV[2]  started_at (epoch seconds)
-- ARGV[3]  record TTL (seconds)
-- ARGV[4]  queue name
-- then for job i, three arguments from ARGV[5 + 3 * (i - 1)]:
--          task name, max_attempts in force for it, enqueued_at as the producer stamped it
--          ('' when unknown)
-- Returns the attempt number that starts now, for each job.
local attempts = {}
for i, record in ipairs(KEYS) do
  local base = 5 + 3 * (i - 1)
  attempts[i] = redis.call('HINCRBY', record, 'attempts', 1)
  redis.call('HSET', record, 'status', 'running', 'worker', ARGV[1], 'started_at', ARGV[2],
    'task', ARGV[base], 'queue', ARGV[4], 'max_attempts', ARGV[base + 1])
  if ARGV[base + 2] ~= '' then
    redis.call('HSET', record, 'enqueued_at', ARGV[base + 2])
  end
  redis.call('EXPIRE', record, ARGV[3])
end
return attempts
