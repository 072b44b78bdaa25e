-- Put a job back at the consuming end of the ready list, and take back the start that was
-- counted for it: a job stopped by a shutdown (its attempt did not finish), or one a consumer
-- took but never ran.
-- KEYS[1]  processing list       coroq:{Q}:processing:<worker-id>
-- KEYS[2]  ready list            coroq:{Q}:ready
-- KEYS[3]  job record hash       coroq:{Q}:job:<id>
-- ARGV[1]  the job's raw bytes, exactly as taken from the ready list
-- ARGV[2] (optional) 'only-tokens', then ARGV[3] on: start tokens of the calls that may
--          have moved the job here and counted its start (a take whose reply was lost, or
--          came before a shutdown); the start is then taken back only if the record's
--          start_token is one of them (none given: never), so a start that someone else
--          counted, or none at all, is left alone.
-- Returns 1 when requeued, 0 when the job was no longer held by this worker.
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then
  return 0
end
redis.call('RPUSH', KEYS[2], ARGV[1])
if redis.call('EXISTS', KEYS[3]) == 1 then
  local take_back = ARGV[2] ~= 'only-tokens'
  if not take_back then
    local token = redis.call('HGET', KEYS[3], 'start_token')
    for i = 3, #ARGV do
      if token == ARGV[i] then
        take_back = true
        break
      end
    end
  end
  if take_back and tonumber(redis.call('HGET', KEYS[3], 'attempts') or '0') > 0 then
    redis.call('HINCRBY', KEYS[3], 'attempts', -1)
  end
  redis.call('HSET', KEYS[3], 'status', 'queued')
end
return 1
