-- ARGV: now, the pre-queue's user ids in the order drawn by the caller (app/queue/draws.py, which
-- recorded and published that order first). Runs once per sale (flag).
--! include prelude
if redis.call('HGET', K_META, 'shuffled') == '1' then return -1 end
local now = tonumber(ARGV[1])
-- the published order must be the whole pre-queue: one who reached it after the caller read it
-- (an API server whose clock runs behind the opening) would have no drawn place. Nothing changes
-- then, and the caller draws the whole set again. One who left meanwhile just leaves a gap.
local present = 0
for i = 2, #ARGV do
  present = present + redis.call('SISMEMBER', K_PRE, ARGV[i])
end
if present < redis.call('SCARD', K_PRE) then return -2 end
-- consecutive negative line numbers -placed .. -1 put the whole pre-queue, in the drawn order,
-- ahead of every later arrival (JOIN numbers those 1, 2, ...). Consecutive integers make the public
-- "served up to" figure an honest bound: nobody is further ahead than their number minus it
-- (app/queue/services.serving)
local placed = 0
for i = 2, #ARGV do
  if redis.call('SREM', K_PRE, ARGV[i]) == 1 then
    placed = placed + 1
    redis.call('ZADD', K_LINE, placed - present - 1, ARGV[i])
  end
end
if placed > 0 then redis.call('HSET', K_STATS, 'served_up_to', -placed - 1) end
redis.call('DEL', K_PRE)
redis.call('HSET', K_META, 'shuffled', '1')
if placed > 0 then
  redis.call('XADD', K_EVENTS, '*', 'type', 'PreQueueShuffled', 'user_id', '',
             'at', now, 'count', placed)
end
return placed
