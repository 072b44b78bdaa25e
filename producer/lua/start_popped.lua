-- Count the start of the job a blocking pop has just moved to the head of a worker's
-- processing list. The consumer sends this script right behind its BLMOVE, in the same
-- write, and Redis runs it as soon as the pop is served: an idle worker starts a job after
-- one round trip instead of two.
-- It starts the head job only when it can tell that the job is new and well formed
-- (start_job.lua, which this script begins with), and otherwise does nothing: the consumer
-- then counts the start itself (start.lua) after decoding the job. A head job this consumer
-- has started already (its record holds a token with this consumer's prefix) is not new:
-- the pop timed out, or a retried job came back to the same worker.
-- KEYS[1]  processing list of the worker   coroq:{Q}:processing:<worker-id>
-- ARGV[1]  this consumer's token prefix
-- ARGV[2] on: as start_job.lua says, with P = 2
-- Returns {} when nothing was started, else {job id, attempt number}.
local P = 2
local head = redis.call('LINDEX', KEYS[1], 0)
if not head then
  return {}
end
local id, job, max_attempts = vouch_for(head, P)
if not id then
  return {}
end
local token = redis.call('HGET', ARGV[P + 3] .. id, 'start_token')
if token and string.sub(token, 1, #ARGV[1]) == ARGV[1] then
  return {}
end
return {id, count_start(id, job, max_attempts, P)}
