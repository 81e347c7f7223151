-- ARGV: now, the pre-queue's user ids in the order drawn by the caller (app/queue/draws.py, which
-- recorded and published that order first). Runs once per sale (flag).
--! include prelude
if redis.call('HGET', K_META, 'shuffled') == '1' then return -1 end
local now = tonumber(ARGV[1])
-- the published order must be the whole pre-queue: one who reached it after the caller read it
-- (an API server whose clock runs behind the opening) would have no drawn place. Nothing changes
-- then, and the caller draws the whole set again. One who left meanwhile just leaves a gap.
-- Each lane's fans (app/queue/lanes.py) are placed in their lane, in the same drawn order.
local lanes = lanes_of(redis.call('HGET', K_META, 'lanes'))
local function lane_key(user)
  local lane = lane_named(lanes, (lane_of(user)))
  return lane and lane.name or ''
end
local present, present_in = 0, {}
for i = 2, #ARGV do
  if redis.call('SISMEMBER', K_PRE, ARGV[i]) == 1 then
    present = present + 1
    local lane = lane_key(ARGV[i])
    present_in[lane] = (present_in[lane] or 0) + 1
  end
end
if present < redis.call('SCARD', K_PRE) then return -2 end
-- consecutive negative line numbers -placed .. -1 put the whole pre-queue (of each lane), in the
-- drawn order, ahead of every later arrival (JOIN numbers those 1, 2, ...). Consecutive integers
-- make the public "served up to" figure an honest bound: nobody is further ahead than their
-- number minus it (app/queue/services.serving)
local placed, placed_in = 0, {}
for i = 2, #ARGV do
  if redis.call('SREM', K_PRE, ARGV[i]) == 1 then
    placed = placed + 1
    local name = lane_key(ARGV[i])
    local k = (placed_in[name] or 0) + 1
    placed_in[name] = k
    if name == '' then
      redis.call('ZADD', K_LINE, k - present_in[name] - 1, ARGV[i])
    else
      redis.call('ZADD', K_LANES, lane_named(lanes, name).index * LANE_BAND + k - present_in[name] - 1, ARGV[i])
    end
  end
end
for name, k in pairs(placed_in) do
  redis.call('HSET', K_STATS, name == '' and 'served_up_to' or 'served_up_to:' .. name, -k - 1)
end
redis.call('DEL', K_PRE)
redis.call('HSET', K_META, 'shuffled', '1')
if placed > 0 then
  redis.call('XADD', K_EVENTS, '*', 'type', 'PreQueueShuffled', 'user_id', '',
             'at', now, 'count', placed)
end
return placed
