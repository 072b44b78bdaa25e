-- Dependencies (docs/futures.md#dependencies): a job pushed with `_after` is held in its
-- record (`held`: its bytes; `held_to`: 'back', 'front' or the due time in ms of a delayed
-- job; `after`: the ids it waits for, as JSON; `after_left`: how many have not succeeded yet)
-- instead of the ready list; its id is in the list `<prefix>:{Q}:dependents:<dep>` of each job
-- it waits for, whose record has `dependents` (hold.lua).
-- A script that gives a job with `dependents` its final status calls `mark_settling`: the
-- job's id goes into the queue's set `<prefix>:{Q}:settling` (in the caller's KEYS), and is
-- published on `<prefix>:{Q}:settle`. Workers hear it and run settle.lua, whose KEYS name
-- the dependents; the set keeps the id until that is done, whatever is lost meanwhile.
local function mark_settling(record, settling)
  local base, id = string.match(record, '^(.-}):job:(.+)$')
  redis.call('SADD', settling, id)
  redis.call('PUBLISH', base .. ':settle', id)
end
