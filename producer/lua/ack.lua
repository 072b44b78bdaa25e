-- Acknowledge jobs that succeeded: record each one's result and drop it from the processing
-- list, in one step. A worker that no longer holds a job (it was recovered) records nothing
-- for it. One call may carry many jobs of one worker (the outcomes of jobs that finished
-- together); each is checked and recorded on its own.
-- KEYS[1]  processing list                 coroq:{Q}:processing:<worker-id>
-- KEYS[1 + i]  job record hash of job i    coroq:{Q}:job:<id>
-- then for job i, five arguments from ARGV[1 + 5 * (i - 1)]:
--          its raw bytes, exactly as taken from the ready list; result (JSON text);
--          finished_at (epoch seconds); record TTL (seconds); the attempt being acknowledged
--          ('' to skip the check)
-- Returns, for each job, 1 when acknowledged, 0 when it was no longer held by this worker (or
-- by this attempt).
-- Fencing: an attempt that is no longer the job's latest (the job was recovered from this
-- worker and started again) records nothing.
local acked = {}
for i = 1, #KEYS - 1 do
  local record = KEYS[i + 1]
  local base = 5 * (i - 1)
  local attempt = ARGV[base + 5]
  -- 'reason' comes with the error and traceback of an earlier failed attempt (retry.lua).
  local seen = redis.call('HMGET', record, 'attempts', 'reason')
  local latest = seen[1]
  -- LREM from the tail: the oldest jobs of the list sit there, and they tend to finish first.
  if (attempt ~= '' and latest and latest ~= attempt)
      or redis.call('LREM', KEYS[1], -1, ARGV[base + 1]) == 0 then
    acked[i] = 0
  else
    redis.call('HSET', record, 'status', 'succeeded', 'result', ARGV[base + 2],
      'finished_at', ARGV[base + 3])
    if seen[2] then
      redis.call('HDEL', record, 'reason', 'error', 'traceback')
    end
    redis.call('EXPIRE', record, ARGV[base + 4])
    acked[i] = 1
  end
end
return acked
