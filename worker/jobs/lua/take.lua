-- Take up to ARGV[2] jobs for one worker in one step: first move delayed jobs that are due to
-- the consuming end of the ready list (lib/promote.lua), then move jobs from the consuming end
-- of the ready list into the worker's processing list (the move BLMOVE makes, k at a time).
-- It counts no start: the worker decodes the jobs, then counts the start of those it will
-- run with start.lua, whose KEYS name their records.
-- KEYS[1]  ready list            coroq:{Q}:ready
-- KEYS[2]  processing list       coroq:{Q}:processing:<worker-id>
-- KEYS[3]  delayed set           coroq:{Q}:delayed
-- ARGV[1]  now (epoch milliseconds)
-- ARGV[2]  at most this many jobs to take (0: only promote)
-- ARGV[3]  at most this many due delayed jobs to promote
-- Returns {due time of the next delayed job in ms or -1, job, job, ...}, oldest job first,
-- each job its raw bytes.
local taken = {promote_due(KEYS[3], KEYS[1], tonumber(ARGV[1]), ARGV[3])}
for _ = 1, tonumber(ARGV[2]) do
  local job = redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT')
  if not job then
    break
  end
  taken[#taken + 1] = job
end
return taken
