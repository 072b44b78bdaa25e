-- Give back the jobs of a worker that is gone: if its heartbeat for this queue has expired,
-- empty its processing list. A job it had not started goes back to the consuming end of the
-- ready list, untouched. A job it was running is a suspect: its worker died, and it may be
-- the cause (docs/reliability.md#blame). Its lost attempt is forgiven (`forgiven` + 1) unless
-- it ran alone on its worker (its record's `group` is 1: then nothing else could have caused
-- the loss); it goes to the suspects, with the size of the largest group it may run in next:
-- half the group it was lost with, so that a job that keeps killing its worker is soon alone.
-- The owner's liveness is checked here, inside Redis, so two reapers racing cannot both
-- move a job, and a live worker's jobs are never taken however long they run. A worker
-- that comes back with the id of one that died takes back its own leftovers ('own').
-- KEYS[1]      processing list of the worker   coroq:{Q}:processing:<worker-id>
-- KEYS[2]      heartbeat of the worker         coroq:{Q}:worker:<worker-id>
-- KEYS[3]      ready list                      coroq:{Q}:ready
-- KEYS[4]      suspects                        coroq:{Q}:suspects
-- KEYS[4 + i]  record of the i-th job of the processing list (LRANGE 0 -1 order)
-- ARGV[1]  the worker id
-- ARGV[2]  the length of the processing list when the caller read it
-- ARGV[3]  'own': the caller is that worker, in a new life (its heartbeat is not checked)
-- Returns {1, 0, 0, 0} when the owner is alive; {0, -1, 0, 0} when the list changed since
-- the caller read it (read it again); else {0, jobs back to ready, suspects, blamed}.
if ARGV[3] ~= 'own' and redis.call('EXISTS', KEYS[2]) == 1 then
  return {1, 0, 0, 0}
end
local jobs = redis.call('LRANGE', KEYS[1], 0, -1)
if #jobs ~= tonumber(ARGV[2]) or #jobs ~= #KEYS - 4 then
  return {0, -1, 0, 0}
end
local groups = {}
local running = 0
for i = 1, #jobs do
  local seen = redis.call('HMGET', KEYS[4 + i], 'status', 'worker', 'group')
  if seen[1] == STATUS.running and seen[2] == ARGV[1] then
    groups[i] = tonumber(seen[3]) or 0
    running = running + 1
  end
end
local ready, suspects, blamed = 0, 0, 0
-- Newest first, each to the consuming end: the oldest ends up taken first.
for i = 1, #jobs do
  local group = groups[i]
  if group == nil then
    redis.call('RPUSH', KEYS[3], jobs[i])
    ready = ready + 1
  else
    if group == 1 then
      blamed = blamed + 1
    else
      redis.call('HINCRBY', KEYS[4 + i], 'forgiven', 1)
      if group == 0 then
        group = running -- an ordinary run: lost with every job this worker ran here
      end
    end
    redis.call('ZADD', KEYS[4], 'LT', math.max(1, math.ceil(group / 2)), jobs[i])
    suspects = suspects + 1
  end
end
redis.call('DEL', KEYS[1])
return {0, ready, suspects, blamed}
