-- Give back the jobs of a worker that is gone: if its heartbeat for this queue has expired,
-- move everything in its processing list to the consuming end of the ready list.
-- The owner's liveness is checked here, inside Redis, so two reapers racing cannot both
-- move a job, and a live worker's jobs are never taken however long they run.
-- KEYS[1]  processing list of the worker    coroq:{Q}:processing:<worker-id>
-- KEYS[2]  heartbeat of the worker          coroq:{Q}:worker:<worker-id>
-- KEYS[3]  ready list                       coroq:{Q}:ready
-- Returns {1, 0} when the owner is alive, else {0, the number of jobs moved}: read in one
-- step, so "dead and holding nothing" is never two reads with an expiry in between.
if redis.call('EXISTS', KEYS[2]) == 1 then
  return {1, 0}
end
local moved = 0
while true do
-- Newest first, each to the consuming end: the oldest ends up taken first.
  local job = redis.call('LMOVE', KEYS[1], KEYS[3], 'LEFT', 'RIGHT')
  if not job then
    break
  end
  moved = moved + 1
end
return {0, moved}
