-- Take up to ARGV[2] jobs for one worker in one step: first move delayed jobs that are due to
-- the consuming end of the ready list, then move jobs from the consuming end of the ready
-- list into the worker's processing list (the same move BLMOVE makes, k at a time).
-- An idle queue costs three commands: this script, one ZRANGE and one LMOVE; two when
-- ARGV[2] is 0 (after a blocking pop timed out, the consumer only promotes due jobs here).
-- KEYS[1]  ready list            coroq:{Q}:ready
-- KEYS[2]  processing list       coroq:{Q}:processing:<worker-id>
-- KEYS[3]  delayed set           coroq:{Q}:delayed
-- ARGV[1]  now (epoch milliseconds)
-- ARGV[2]  at most this many jobs to take
-- ARGV[3]  at most this many due delayed jobs to promote
-- ARGV[4] on (optional): as start_job.lua says (this script begins with it), with P = 4:
--          count the start of each job taken that the script can vouch for, in this same step
-- Returns {due time of the next delayed job in ms or -1, job, job, ...}, oldest job first;
-- each job is its raw bytes, or {raw bytes, job id, attempt number} when its start was counted.
local now = tonumber(ARGV[1])
local next_job = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
if next_job[2] and tonumber(next_job[2]) <= now then
  local due = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, ARGV[3])
  for _, job in ipairs(due) do
    redis.call('ZREM', KEYS[3], job)
    redis.call('RPUSH', KEYS[1], job)
  end
  next_job = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
end
local taken = {-1}
if next_job[2] then
  taken[1] = tonumber(next_job[2])
end
local P = 4
local starting = #ARGV >= P
for _ = 1, tonumber(ARGV[2]) do
  local job = redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT')
  if not job then
    break
  end
  if starting then
    local id, envelope, max_attempts = vouch_for(job, P)
    if id then
      job = {job, id, count_start(id, envelope, max_attempts, P)}
    end
  end
  taken[#taken + 1] = job
end
return taken
