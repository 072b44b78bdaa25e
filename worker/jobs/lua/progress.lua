-- Record a running job's progress (docs/futures.md#progress), only while the attempt that
-- reports it is the job's latest and still running; publish the id on the queue's `done`
-- channel when a producer waits on it (producer/lua/lib/notify.lua), which then reads the new progress.
-- KEYS[1]  job record hash       coroq:{Q}:job:<id>
-- ARGV[1]  fraction done, 0 to 1 (text)
-- ARGV[2]  a short note ('' for none)
-- ARGV[3]  reported at (epoch seconds, the worker's clock)
-- ARGV[4]  the attempt reporting it
-- Returns 1 when recorded, 0 when that attempt is no longer the job's running one.
local seen = redis.call('HMGET', KEYS[1], 'attempts', 'status', 'watched')
if seen[1] ~= ARGV[4] or seen[2] ~= STATUS.running then
  return 0
end
redis.call('HSET', KEYS[1], 'progress', ARGV[1], 'progress_note', ARGV[2], 'progress_at', ARGV[3])
if seen[3] then
  notify_done(KEYS[1])
end
return 1
