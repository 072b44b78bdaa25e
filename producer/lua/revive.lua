-- Send a dead job back to its queue: drop its dead-list entry, push its original bytes to the
-- consuming end of the ready list, and reset its attempts (and what recovery kept about its
-- lost ones), in one step.
-- KEYS[1]  dead list             coroq:{Q}:dead
-- KEYS[2]  ready list            coroq:{Q}:ready
-- KEYS[3]  job record hash       coroq:{Q}:job:<id>
-- ARGV[1]  the dead-list entry, exactly as stored
-- ARGV[2]  the job's original bytes
-- ARGV[3]  record TTL (seconds)
-- Returns 1 when revived, 0 when the entry was no longer in the dead list.
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then
  return 0
end
redis.call('RPUSH', KEYS[2], ARGV[2])
redis.call('HSET', KEYS[3], 'status', STATUS.queued, 'attempts', 0)
redis.call('HDEL', KEYS[3], 'reason', 'error', 'traceback', 'next_attempt_at', 'forgiven', 'group')
redis.call('EXPIRE', KEYS[3], ARGV[3])
return 1
