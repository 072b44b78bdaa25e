-- Replace a job taken without an id by the same job with the id the worker gave it, so a
-- re-run (after a shutdown or a crash) keeps the same id, record and attempt count.
-- KEYS[1]  processing list       coroq:{Q}:processing:<worker-id>
-- ARGV[1]  the job's raw bytes, exactly as taken from the ready list
-- ARGV[2]  the same job with its new id
-- Returns 1 when replaced, 0 when the job was no longer held by this worker.
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then
  return 0
end
redis.call('LPUSH', KEYS[1], ARGV[2])
return 1
