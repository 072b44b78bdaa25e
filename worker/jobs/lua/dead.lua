-- Move a job that failed for good (or could not be run at all) to the dead list, record why,
-- and drop it from the processing list, in one step (lib/fence.lua).
-- KEYS[1]  processing list       coroq:{Q}:processing:<worker-id>
-- KEYS[2]  dead list             coroq:{Q}:dead
-- KEYS[3]  job record hash       coroq:{Q}:job:<id>
-- ARGV[1]  the job's raw bytes, exactly as taken from the ready list
-- ARGV[2]  dead-list entry (JSON text: id, reason, error, traceback, raw, timestamps)
-- ARGV[3]  reason (machine-readable)
-- ARGV[4]  error message
-- ARGV[5]  traceback ('' when none)
-- ARGV[6]  finished_at (epoch seconds)
-- ARGV[7]  record TTL (seconds)
-- ARGV[8]  the attempt that failed ('' for a job that never started)
-- KEYS[4]  settling set          coroq:{Q}:settling (producer/lua/lib/after.lua)
-- KEYS[5], KEYS[6]  for a member of a group: the group's hash and the ready list
--          (producer/lua/lib/group.lua: the member is counted in its group)
-- A job whose cancel was requested while it ran is recorded `cancelled` instead, and does not
-- go to the dead list (lib/cancel.lua). Either way the jobs held for it are marked to be
-- settled (producer/lua/lib/after.lua).
-- Returns 1 when dead-lettered (now, or by this same call before its reply was lost), 2 when
-- recorded as cancelled instead, 0 when the job was no longer held by this attempt.
local seen = redis.call('HMGET', KEYS[3], 'attempts', 'status', 'watched', 'cancel_requested',
  'dependents')
local outcome, status = outcome_of(seen[4], STATUS.dead)
local held = release_held(KEYS[1], ARGV[1], seen[1], seen[2], ARGV[8], status, false)
if held == 'settled' then
  return outcome
elseif not held then
  return 0
end
if outcome == 2 then
  mark_cancelled(KEYS[3], ARGV[6], ARGV[7])
  if KEYS[5] then
    count_in_group(KEYS[3], KEYS[5], KEYS[6],
      member_outcome(KEYS[3], STATUS.cancelled, nil, 'cancelled by request'))
  end
else
  redis.call('LPUSH', KEYS[2], ARGV[2])
  redis.call('HSET', KEYS[3], 'status', STATUS.dead, 'reason', ARGV[3], 'error', ARGV[4],
    'traceback', ARGV[5], 'finished_at', ARGV[6])
  redis.call('EXPIRE', KEYS[3], ARGV[7])
  if KEYS[5] then
    count_in_group(KEYS[3], KEYS[5], KEYS[6], member_outcome(KEYS[3], STATUS.dead, nil, ARGV[4]))
  end
end
if seen[3] then
  notify_done(KEYS[3])
end
if seen[5] then
  mark_settling(KEYS[3], KEYS[4])
end
return outcome
