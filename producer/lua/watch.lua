-- Ask to be told when jobs end (docs/protocol.md#completion): mark each job's record
-- `watched`, so that the worker's script that records its final status publishes its id on
-- the queue's `done` channel; and give back the records of the jobs already final, which
-- will publish nothing more. The caller subscribes before it calls this: a job that ends
-- after this call is published, one that ended before is returned.
-- KEYS[i]  job record hash of job i    coroq:{Q}:job:<id>
-- ARGV[1]  TTL (seconds) of a record this call creates: a job that has not started has none
--          yet, and its start sets the worker's own
-- Returns, for each job, its whole record (as HGETALL) when final, else an empty list.
local out = {}
for i, record in ipairs(KEYS) do
  local status = redis.call('HGET', record, 'status')
  if status == STATUS.succeeded or status == STATUS.dead or status == STATUS.cancelled then
    out[i] = redis.call('HGETALL', record)
  else
    redis.call('HSET', record, 'watched', 1)
    if redis.call('TTL', record) == -1 then
      redis.call('EXPIRE', record, ARGV[1])
    end
    out[i] = {}
  end
end
return out
