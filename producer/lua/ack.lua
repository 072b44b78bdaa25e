-- Acknowledge a job that succeeded: record its result and drop it from the processing list,
-- in one step. A worker that no longer holds the job (it was recovered) records nothing.
-- KEYS[1]  processing list       coroq:{Q}:processing:<worker-id>
-- KEYS[2]  job record hash       coroq:{Q}:job:<id>
-- ARGV[1]  the job's raw bytes, exactly as taken from the ready list
-- ARGV[2]  result (JSON text)
-- ARGV[3]  finished_at (epoch seconds)
-- ARGV[4]  record TTL (seconds)
-- ARGV[5]  the attempt being acknowledged ('' to skip the check)
-- Returns 1 when acknowledged, 0 when the job was no longer held by this worker (or by this attempt).
-- Fencing: an attempt that is no longer the job's latest (the job was recovered from this
-- worker and started again) records nothing.
local latest = redis.call('HGET', KEYS[2], 'attempts')
if ARGV[5] ~= '' and latest and latest ~= ARGV[5] then
  return 0
end
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[2], 'status', 'succeeded', 'result', ARGV[2], 'finished_at', ARGV[3])
redis.call('HDEL', KEYS[2], 'reason', 'error', 'traceback')
redis.call('EXPIRE', KEYS[2], ARGV[4])
return 1
