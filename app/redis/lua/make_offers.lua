-- Offers from the pool, in arrival order. A fan who wants more than the pool holds is skipped and
-- keeps their place (the next release may fit them); a smaller request behind them is served.
-- Whatever is left once nobody waits opens to everyone (the gate).
-- KEYS: 1 WL  2 WLQ  3 POOL  4 OFFERS  5 OFFEREXP  6 USEROFFER  7 OFFERED  8 SEQ  9 gate  10 FRESH
-- ARGV: now, window seconds, most fans scanned
-- Reply: flat list user, offer id, quantity, expires, ...
local pool = tonumber(redis.call('GET', KEYS[3]) or '0')
local made = {}
if pool > 0 then
  local expires = tonumber(ARGV[1]) + tonumber(ARGV[2])
  for _, user in ipairs(redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[3]) - 1)) do
    if pool <= 0 then break end
    local q = tonumber(redis.call('HGET', KEYS[2], user) or '0')
    if q > 0 and q <= pool then
      pool = pool - q
      redis.call('ZREM', KEYS[1], user)
      redis.call('HDEL', KEYS[2], user)
      local offer = 'o' .. redis.call('INCR', KEYS[8])
      redis.call('HSET', KEYS[4], offer, user .. ':' .. q .. ':' .. expires)
      redis.call('ZADD', KEYS[5], expires, offer)
      redis.call('HSET', KEYS[6], user, offer)
      redis.call('INCRBY', KEYS[7], q)
      redis.call('SADD', KEYS[10], offer)
      table.insert(made, user); table.insert(made, offer); table.insert(made, q); table.insert(made, tostring(expires))
    end
  end
  redis.call('SET', KEYS[3], pool)
end
if pool > 0 and redis.call('ZCARD', KEYS[1]) == 0 then
  redis.call('SET', KEYS[3], 0)
  if redis.call('EXISTS', KEYS[9]) == 1 then redis.call('INCRBY', KEYS[9], pool) end
end
return made
