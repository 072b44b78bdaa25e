-- Telling a waiting producer that a job has ended (docs/protocol.md#completion). A producer
-- that waits on a job marks its record `watched`; the script that gives the job its final
-- status then publishes the job's id on the queue's channel `<prefix>:{Q}:done`. Both are
-- read from the record's key, `<prefix>:{Q}:job:<id>`: the tag closes at the first `}`, as
-- queue names hold no brace. Jobs nobody waits on cost nothing more than the field read.
local function notify_done(record)
  local base, id = string.match(record, '^(.-}):job:(.+)$')
  redis.call('PUBLISH', base .. ':done', id)
end
