-- The hold writer's follow-up of one batch, after MySQL committed it: all of it or none of it, so a
-- crash leaves the entries pending and the re-run rebuilds the same follow-up (app/booking/writer.py).
-- KEYS: 1 pending records  2 writes counter  3 reserve stream  4 user units  5 dead letters
--       6 pending ids per user  7 pending units per section, then 5 keys per section the batch
--       touches: gate, holds, waitlist, pool, stats
-- ARGV: 1 consumer group  2 JSON {"ack": [entry ids], "done": [[reservation id, user, section, units]],
--       "holds": [[section index (1-based), member, deadline]], "give": [[section index, units, user or ""]],
--       "dead": [[field, value, ...]] (entries for the dead-letter stream)}
--! include put_back
local plan = cjson.decode(ARGV[2])
local function section_key(i, n) return KEYS[7 + (i - 1) * 5 + n] end
for _, h in ipairs(plan['holds'] or {}) do
  redis.call('ZADD', section_key(h[1], 2), h[3], h[2])
end
for _, g in ipairs(plan['give'] or {}) do
  local units = tonumber(g[2])
  off_count(KEYS[4], g[3], units)
  put_back(section_key(g[1], 1), section_key(g[1], 3), section_key(g[1], 4), section_key(g[1], 5), units)
end
for _, d in ipairs(plan['dead'] or {}) do
  redis.call('XADD', KEYS[5], 'MAXLEN', '~', 100000, '*', unpack(d))
end
for _, d in ipairs(plan['done'] or {}) do
  local rid, user = d[1], tostring(d[2])
  if redis.call('HDEL', KEYS[1], rid) == 1 then
    local section = tostring(d[3])
    if redis.call('HINCRBY', KEYS[7], section, -tonumber(d[4])) <= 0 then redis.call('HDEL', KEYS[7], section) end
  end
  local left = {}
  for id in string.gmatch(redis.call('HGET', KEYS[6], user) or '', '%S+') do
    if id ~= rid then table.insert(left, id) end
  end
  if #left > 0 then
    redis.call('HSET', KEYS[6], user, table.concat(left, ' '))
  else
    redis.call('HDEL', KEYS[6], user)
  end
end
redis.call('INCR', KEYS[2])
if #(plan['ack'] or {}) > 0 then
  redis.call('XACK', KEYS[3], ARGV[1], unpack(plan['ack']))
  redis.call('XDEL', KEYS[3], unpack(plan['ack']))
end
return #(plan['ack'] or {})
