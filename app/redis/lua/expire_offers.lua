-- Offers past their end go back to the pool (or to the gate when nobody waits).
-- KEYS: 1 OFFERS  2 OFFEREXP  3 USEROFFER  4 OFFERED  5 gate  6 WL  7 POOL  8 STATS  9 FRESH
-- ARGV: now. Reply: flat list user, offer id, quantity, ...
--! include put_back
local gone = {}
for _, offer in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, 500)) do
  local value = redis.call('HGET', KEYS[1], offer)
  redis.call('ZREM', KEYS[2], offer)
  redis.call('SREM', KEYS[9], offer)
  if value then
    local user, q = string.match(value, '^(%d+):(%d+):')
    redis.call('HDEL', KEYS[1], offer)
    if redis.call('HGET', KEYS[3], user) == offer then redis.call('HDEL', KEYS[3], user) end
    redis.call('DECRBY', KEYS[4], q)
    put_back(KEYS[5], KEYS[6], KEYS[7], KEYS[8], tonumber(q))
    table.insert(gone, user); table.insert(gone, offer); table.insert(gone, q)
  end
end
return gone
