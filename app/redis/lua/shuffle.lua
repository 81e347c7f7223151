-- ARGV: now, user ids in the random order drawn by the caller. Runs once per sale (flag).
--! include prelude
if redis.call('HGET', K_META, 'shuffled') == '1' then return -1 end
local now = tonumber(ARGV[1])
-- the order: the drawn users still in the pre-queue, then anyone who joined it after the caller
-- read it
local order = {}
for i = 2, #ARGV do
  if redis.call('SREM', K_PRE, ARGV[i]) == 1 then table.insert(order, ARGV[i]) end
end
for _, user in ipairs(redis.call('SMEMBERS', K_PRE)) do table.insert(order, user) end
local placed = #order
-- consecutive negative line numbers -placed .. -1 put the whole pre-queue, in that order, ahead
-- of every later arrival (JOIN numbers those 1, 2, ...). Consecutive integers make the public
-- "served up to" figure an honest bound: nobody is further ahead than their number minus it
-- (app/queue/services.serving)
for i, user in ipairs(order) do
  redis.call('ZADD', K_LINE, i - placed - 1, user)
end
if placed > 0 then redis.call('HSET', K_STATS, 'served_up_to', -placed - 1) end
redis.call('DEL', K_PRE)
redis.call('HSET', K_META, 'shuffled', '1')
if placed > 0 then
  redis.call('XADD', K_EVENTS, '*', 'type', 'PreQueueShuffled', 'user_id', '',
             'at', now, 'count', placed)
end
return placed
