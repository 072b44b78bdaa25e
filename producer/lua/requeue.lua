-- Put a job that was stopped by a shutdown back at the consuming end of the ready list,
-- without counting the attempt it did not finish.
-- KEYS[1]  processing list       coroq:{Q}:processing:<worker-id>
-- KEYS[2]  ready list            coroq:{Q}:ready
-- KEYS[3]  job record hash       coroq:{Q}:job:<id>
-- ARGV[1]  the job's raw bytes, exactly as taken from the ready list
-- Returns 1 when requeued, 0 when the job was no longer held by this worker.
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then
  return 0
end
redis.call('RPUSH', KEYS[2], ARGV[1])
if redis.call('EXISTS', KEYS[3]) == 1 then
  local attempts = tonumber(redis.call('HGET', KEYS[3], 'attempts') or '0')
  if attempts > 0 then
    redis.call('HINCRBY', KEYS[3], 'attempts', -1)
  end
  redis.call('HSET', KEYS[3], 'status', 'queued')
end
return 1
