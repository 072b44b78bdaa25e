-- Acknowledge jobs that succeeded: record each one's result and drop it from the processing
-- list, in one step (lib/fence.lua: only the attempt running it, while this worker holds it).
-- One call may carry many jobs of one worker (the outcomes of jobs that finished together);
-- each is checked and recorded on its own.
-- KEYS[1]      processing list                 coroq:{Q}:processing:<worker-id>
-- KEYS[1 + i]  job record hash of job i        coroq:{Q}:job:<id>
-- then for job i, five arguments from ARGV[1 + 5 * (i - 1)]:
--          its raw bytes, exactly as taken from the ready list; result (JSON text);
--          finished_at (epoch seconds); record TTL (seconds); the attempt being acknowledged
-- A job whose cancel was requested while it ran is recorded `cancelled`, its result dropped
-- (lib/cancel.lua).
-- Returns, for each job, 1 when acknowledged (now, or by this same call before its reply was
-- lost), 2 when recorded as cancelled instead, 0 when it was no longer held by this attempt.
local acked = {}
for i = 1, #KEYS - 1 do
  local record = KEYS[i + 1]
  local base = 5 * (i - 1)
  -- 'reason' comes with the error and traceback of an earlier failed attempt (retry.lua).
  local seen = redis.call('HMGET', record, 'attempts', 'status', 'reason', 'watched',
    'cancel_requested')
  local outcome, status = 1, STATUS.succeeded
  if seen[5] then
    outcome, status = 2, STATUS.cancelled
  end
  -- From the tail: the oldest jobs of the list sit there, and they tend to finish first.
  local held = release_held(KEYS[1], ARGV[base + 1], seen[1], seen[2], ARGV[base + 5],
    status, true)
  if held == 'settled' then
    acked[i] = outcome
  elseif held then
    if outcome == 2 then
      mark_cancelled(record, ARGV[base + 3], ARGV[base + 4])
    else
      redis.call('HSET', record, 'status', STATUS.succeeded, 'result', ARGV[base + 2],
        'finished_at', ARGV[base + 3])
      if seen[3] then
        redis.call('HDEL', record, 'reason', 'error', 'traceback')
      end
      redis.call('EXPIRE', record, ARGV[base + 4])
    end
    if seen[4] then
      notify_done(record)
    end
    acked[i] = outcome
  else
    acked[i] = 0
  end
end
return acked
