-- Groups (docs/futures.md#groups): jobs pushed together with a callback job, which is pushed
-- exactly once, when every member has a final status. The group's hash `coroq:{Q}:group:<gid>`
-- holds `size`, `left`, the callback's envelope (`callback`) with a placeholder (`placeholder`)
-- where the members' outcomes go, and `r:<index>`, the outcome of each member counted. A
-- member's record holds `group_id` and `group_index` (written with the group), and
-- `group_counted` once counted. Every script that gives a job a final status counts it here,
-- in the same step; the caller passes the group's key and the ready list in KEYS (the group
-- named by the job's envelope), and nothing is counted unless the record's `group_id` names
-- that same group.

-- The keys of a job, from KEYS[at] on: its record, then its group's hash and the ready list
-- when `flag` holds 'g', then its unique key (lib/unique.lua) when it holds 'u'. Returns them
-- (nil for those it has not) and where the next job's keys start, in a call that carries many.
local function job_keys(at, flag)
  local record, group, ready, unique = KEYS[at], nil, nil, nil
  at = at + 1
  if string.find(flag, 'g', 1, true) then
    group, ready, at = KEYS[at], KEYS[at + 1], at + 2
  end
  if string.find(flag, 'u', 1, true) then
    unique, at = KEYS[at], at + 1
  end
  return record, group, ready, unique, at
end

-- The outcome of a member as the callback receives it: {"id", "status", "result"} for one that
-- succeeded (`result_json` as the worker recorded it), else {"id", "status", "error"}.
local function member_outcome(record, status, result_json, error_text)
  local id = string.match(record, '^.-}:job:(.+)$')
  if result_json then
    return '{"id":' .. cjson.encode(id) .. ',"status":"' .. status .. '","result":'
      .. result_json .. '}'
  end
  return cjson.encode({id = id, status = status, error = error_text})
end

-- Count a member that has just reached a final status; push the callback after the last one.
local function count_in_group(record, group, ready, outcome)
  local seen = redis.call('HMGET', record, 'group_id', 'group_index', 'group_counted')
  if not seen[1] or seen[3] or redis.call('EXISTS', group) == 0 then
    return  -- not a member, counted already, or its group expired
  end
  local suffix = ':group:' .. seen[1]
  if string.sub(group, -#suffix) ~= suffix then
    return
  end
  redis.call('HSET', record, 'group_counted', 1)
  redis.call('HSET', group, 'r:' .. seen[2], outcome)
  if redis.call('HINCRBY', group, 'left', -1) ~= 0 then
    return
  end
  local size = tonumber(redis.call('HGET', group, 'size'))
  local parts = {}
  for i = 1, size do
    parts[i] = redis.call('HGET', group, 'r:' .. i) or 'null'
  end
  local callback = redis.call('HGET', group, 'callback')
  local mark = redis.call('HGET', group, 'placeholder')
  local at = string.find(callback, mark, 1, true)
  redis.call('LPUSH', ready, string.sub(callback, 1, at - 1) .. '[' .. table.concat(parts, ',')
    .. ']' .. string.sub(callback, at + #mark))
  redis.call('HSET', group, 'done_at', redis.call('TIME')[1])
end
