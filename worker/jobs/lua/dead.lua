-- Move a job that failed for good (or could not be run at all) to the dead list, record why,
-- and drop it from the processing list, in one step (lib/fence.lua).
-- KEYS[1]  processing list       coroq:{Q}:processing:<worker-id>
-- KEYS[2]  dead list             coroq:{Q}:dead
-- KEYS[3]  settling set          coroq:{Q}:settling (producer/lua/lib/after.lua)
-- KEYS[4]  job record hash       coroq:{Q}:job:<id>
--          then, as ARGV[9] says (producer/lua/lib/group.lua, `job_keys`): for a member of a
--          group, the group's hash and the ready list; for a unique job, its unique key; for
--          a job holding a permit, its limiter's keys (lib/limits.lua)
-- ARGV[1]  the job's raw bytes, exactly as taken from the ready list
-- ARGV[2]  dead-list entry (JSON text: id, reason, error, traceback, raw, timestamps)
-- ARGV[3]  reason (machine-readable)
-- ARGV[4]  error message
-- ARGV[5]  traceback ('' when none)
-- ARGV[6]  finished_at (epoch seconds)
-- ARGV[7]  record TTL (seconds)
-- ARGV[8]  the attempt that failed ('' for a job that never started)
-- ARGV[9]  which keys follow the record: 'g' (group), 'u' (unique key), 'c' (limiter)
-- A job whose cancel was requested while it ran is recorded `cancelled` instead, and does not
-- go to the dead list (lib/cancel.lua). Either way the rest follows (producer/lua/lib/final.lua).
-- Returns 1 when dead-lettered (now, or by this same call before its reply was lost), 2 when
-- recorded as cancelled instead, 0 when the job was no longer held by this attempt.
local record, group, ready, unique, at = job_keys(4, ARGV[9])
local limit = limit_keys(at, ARGV[9])
local seen = redis.call('HMGET', record, 'attempts', 'status', 'watched', 'cancel_requested',
  'dependents')
local outcome, status = outcome_of(seen[4], STATUS.dead)
local held = release_held(KEYS[1], ARGV[1], seen[1], seen[2], ARGV[8], status, false)
if held == 'settled' then
  return outcome
elseif not held then
  return 0
end
release_permit(limit, record)
local why = ARGV[4]
if outcome == 2 then
  mark_cancelled(record, ARGV[6], ARGV[7])
  why = 'cancelled by request'
else
  redis.call('LPUSH', KEYS[2], ARGV[2])
  redis.call('HSET', record, 'status', STATUS.dead, 'reason', ARGV[3], 'error', ARGV[4],
    'traceback', ARGV[5], 'finished_at', ARGV[6])
  redis.call('EXPIRE', record, ARGV[7])
end
after_final({record = record, status = status, error = why, group = group, ready = ready,
  unique = unique, watched = seen[3], dependents = seen[5], settling = KEYS[3]})
return outcome
