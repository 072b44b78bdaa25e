-- Take up to ARGV[2] jobs for one worker in one step: first move delayed jobs that are due to
-- the consuming end of the ready list (lib/promote.lua), then move jobs into the worker's
-- processing list: from the consuming end of the ready list (the move BLMOVE makes, k at a
-- time), or, for a trial, a group of suspects (docs/reliability.md#blame).
-- While suspects wait, an ordinary take moves nothing: the worker runs them first, alone.
-- It counts no start: the worker decodes the jobs, then counts the start of those it will
-- run with start.lua, whose KEYS name their records.
-- KEYS[1]  ready list            coroq:{Q}:ready
-- KEYS[2]  processing list       coroq:{Q}:processing:<worker-id>
-- KEYS[3]  delayed set           coroq:{Q}:delayed
-- KEYS[4]  suspects              coroq:{Q}:suspects
-- KEYS[5]  pause mark            coroq:{Q}:paused (set: the queue is paused; nothing is taken)
-- ARGV[1]  now (epoch milliseconds)
-- ARGV[2]  at most this many jobs to take (0: only promote)
-- ARGV[3]  at most this many due delayed jobs to promote
-- ARGV[4]  'trial': take a group of suspects (the worker runs nothing else meanwhile);
--          anything else: an ordinary take
-- Returns {due time of the next delayed job in ms or -1, suspects still waiting, 1 when the
-- queue is paused else 0, job, ...}, oldest job first, each job its raw bytes. A take of none
-- (an idle worker's look after its pop timed out) only promotes: it looks neither at the
-- pause (a job its next pop takes from a paused queue goes back: start.lua) nor at the
-- suspects (the worker that found them runs them; others see them when they take jobs).
local taken = {promote_due(KEYS[3], KEYS[1], tonumber(ARGV[1]), ARGV[3]), 0, 0}
local most = tonumber(ARGV[2])
if most == 0 then
  return taken
end
if redis.call('EXISTS', KEYS[5]) == 1 then
  taken[3] = 1
  return taken
end
if ARGV[4] == 'trial' then
  -- The suspects with the smallest bound first; a group no larger than any member's bound.
  local first = redis.call('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')
  if first[2] and most > 0 then
    local size = math.min(most, math.max(1, tonumber(first[2])))
    for _, job in ipairs(redis.call('ZRANGE', KEYS[4], 0, size - 1)) do
      redis.call('ZREM', KEYS[4], job)
      redis.call('LPUSH', KEYS[2], job)
      taken[#taken + 1] = job
    end
  end
  taken[2] = redis.call('ZCARD', KEYS[4])
  return taken
end
taken[2] = redis.call('ZCARD', KEYS[4])
if taken[2] > 0 then
  return taken
end
for _ = 1, most do
  local job = redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT')
  if not job then
    break
  end
  taken[#taken + 1] = job
end
return taken
