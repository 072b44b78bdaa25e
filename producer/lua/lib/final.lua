-- What every script that gives a job its final status (succeeded, dead, cancelled) does
-- besides recording it, in the same step: count a member in its group (lib/group.lua), let
-- its unique key go (lib/unique.lua), tell a waiting producer (lib/notify.lua) and mark the
-- jobs held for it to be settled (lib/after.lua). `job` holds:
--   record               the job's record key
--   status               its final status
--   result or error      its result (JSON text) when it succeeded, else why it ended
--   group, ready         for a member of a group: the group's hash and the ready list
--   unique               the unique key it may hold
--   watched, dependents  the record's marks, as the caller read them
--   settling             the queue's settling set
local function after_final(job)
  if job.group then
    count_in_group(job.record, job.group, job.ready,
      member_outcome(job.record, job.status, job.result, job.error))
  end
  if job.unique then
    release_unique(job.unique, job.record)
  end
  if job.watched then
    notify_done(job.record)
  end
  if job.dependents then
    mark_settling(job.record, job.settling)
  end
end
