-- ARGV: now, user ids in the random order drawn by the caller. Runs once per sale (flag).
--! include prelude
if redis.call('HGET', K_META, 'shuffled') == '1' then return -1 end
local now = tonumber(ARGV[1])
local n = #ARGV - 1
local placed = 0
for i = 2, #ARGV do
  local user = ARGV[i]
  if redis.call('SREM', K_PRE, user) == 1 then
    -- negative scores put the whole pre-queue, in drawn order, ahead of every later arrival
    redis.call('ZADD', K_LINE, (i - 1) - n - 1, user)
    placed = placed + 1
  end
end
-- anyone who joined the pre-queue after the caller read it goes behind the drawn block
for _, user in ipairs(redis.call('SMEMBERS', K_PRE)) do
  redis.call('ZADD', K_LINE, -1 + 1 / (placed + 2), user)
  placed = placed + 1
end
redis.call('DEL', K_PRE)
redis.call('HSET', K_META, 'shuffled', '1')
if placed > 0 then
  redis.call('XADD', K_EVENTS, '*', 'type', 'PreQueueShuffled', 'user_id', '',
             'at', now, 'count', placed)
end
return placed
