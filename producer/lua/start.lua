-- Record that jobs start an attempt; every start counts, recovered ones included. One call
-- records a whole batch taken together. A job no longer in the worker's processing list (a
-- pop whose reply came late, after the job was recovered and run elsewhere) is not started.
-- If the take or pop that carried this call's token had counted its start, that count is
-- taken back: the job never started here.
-- KEYS[1]  processing list of the worker   coroq:{Q}:processing:<worker-id>
-- KEYS[1 + i]  job record hash of job i    coroq:{Q}:job:<id>
-- ARGV[1]  worker id
-- ARGV[2]  started_at (epoch seconds)
-- ARGV[3]  record TTL (seconds)
-- ARGV[4]  queue name
-- ARGV[5]  a token unique to this call: sent again after a lost reply, the call counts
--          nothing twice
-- then for job i, four arguments from ARGV[6 + 4 * (i - 1)]:
--          its raw bytes as held, task name, max_attempts in force for it, enqueued_at as the
--          producer stamped it ('' when unknown)
-- Returns the attempt number that starts now for each job, 0 for a job not held.
local attempts = {}
for i = 1, #KEYS - 1 do
  local record = KEYS[i + 1]
  local base = 6 + 4 * (i - 1)
  if not redis.call('LPOS', KEYS[1], ARGV[base]) then
    attempts[i] = 0
    if redis.call('HGET', record, 'start_token') == ARGV[5] then
      -- No one has started it since (a start replaces the token): take back our count.
      redis.call('HINCRBY', record, 'attempts', -1)
      redis.call('HSET', record, 'status', 'queued')
      redis.call('HDEL', record, 'start_token')  -- so a repeat of this call takes back nothing
    end
  elseif redis.call('HGET', record, 'start_token') == ARGV[5] then
    attempts[i] = tonumber(redis.call('HGET', record, 'attempts'))
  else
    attempts[i] = redis.call('HINCRBY', record, 'attempts', 1)
  end
  if attempts[i] > 0 then
    redis.call('HSET', record, 'status', 'running', 'worker', ARGV[1], 'started_at', ARGV[2],
      'task', ARGV[base + 1], 'queue', ARGV[4], 'max_attempts', ARGV[base + 2],
      'start_token', ARGV[5])
    if ARGV[base + 3] ~= '' then
      redis.call('HSET', record, 'enqueued_at', ARGV[base + 3])
    end
    redis.call('EXPIRE', record, ARGV[3])
  end
end
return attempts
