-- Cancelling a job by request (docs/futures.md#cancel). A producer cancels a job that has
-- not started by giving its record the final status `cancelled`, and asks for a running one
-- to be stopped by setting `cancel_requested`: the worker running it cancels its coroutine,
-- and whichever script settles the attempt (ack, retry, dead), or starts it again after a
-- recovery (start), records `cancelled` instead, dropping any result.
local function mark_cancelled(record, finished_at, ttl)
  redis.call('HSET', record, 'status', STATUS.cancelled, 'reason', 'by_request',
    'error', 'cancelled by request', 'finished_at', finished_at)
  redis.call('HDEL', record, 'result', 'traceback', 'next_attempt_at')
  redis.call('EXPIRE', record, ttl)
end

-- What the script settling an attempt records: the outcome it was called for (1, `status`),
-- or `cancelled` (2) when a producer asked for the job to be cancelled while it ran.
local function outcome_of(cancel_requested, status)
  if cancel_requested then
    return 2, STATUS.cancelled
  end
  return 1, status
end
