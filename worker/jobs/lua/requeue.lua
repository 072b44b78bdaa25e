-- Put a held job back at the consuming end of the ready list, and take back the start
-- counted for it (lib/records.lua) when that start never ran.
-- KEYS[1]  processing list       coroq:{Q}:processing:<worker-id>
-- KEYS[2]  ready list            coroq:{Q}:ready
-- KEYS[3]  job record hash       coroq:{Q}:job:<id>
--          then, with ARGV[3] 'c', its limiter's keys (lib/limits.lua): a job that held a
--          permit gives it up as it goes back
-- ARGV[1]  the job's raw bytes, exactly as taken from the ready list
-- ARGV[2]  'undo': take the start back (a job stopped by shutdown: its attempt did not
--          finish); 'keep': leave the count (a job taken and given back before its start was
--          counted, or one that ran but whose outcome could not be recorded)
-- ARGV[3]  'c' when the job's limiter's keys follow, else ''
-- Returns 1 when requeued, 0 when the job was no longer held by this worker.
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then
  return 0
end
redis.call('RPUSH', KEYS[2], ARGV[1])
release_permit(limit_keys(4, ARGV[3] or ''), KEYS[3])
if redis.call('EXISTS', KEYS[3]) == 1 then
  if ARGV[2] == 'undo' then
    undo_start(KEYS[3])
  else
    redis.call('HSET', KEYS[3], 'status', STATUS.queued)
  end
end
return 1
