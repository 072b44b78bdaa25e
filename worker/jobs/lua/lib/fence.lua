-- Fencing: only the attempt a worker is running may settle a job, and only while the job is
-- in that worker's processing list. A job recovered from this worker (its heartbeat lapsed)
-- and started again elsewhere has a later attempt in its record, or has left the list: then
-- nothing is written. `attempt` is '' for a job that never started (bad input).
-- Returns 'held' when the job was held by this attempt and is now removed from the processing
-- list; 'settled' when this attempt already settled it as `status` (the same call, sent again
-- after its reply was lost with the connection: nothing is written twice); false otherwise.
-- `from_tail`: look for the job from the tail of the list, where the oldest jobs sit.
local function release_held(processing, raw, seen_attempt, seen_status, attempt, status, from_tail)
  if attempt ~= '' and seen_attempt and seen_attempt ~= attempt then
    return false
  end
  local count = 1
  if from_tail then
    count = -1
  end
  if redis.call('LREM', processing, count, raw) ~= 0 then
    return 'held'
  end
  if attempt ~= '' and seen_attempt == attempt and seen_status == status then
    return 'settled'
  end
  return false
end
