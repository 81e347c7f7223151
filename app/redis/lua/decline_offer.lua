-- A fan declines (or leaves with) an open offer: its units pass on at once.
-- KEYS: 1 OFFERS  2 OFFEREXP  3 USEROFFER  4 OFFERED  5 gate  6 WL  7 POOL  8 STATS  9 FRESH
-- ARGV: user. Reply: the quantity given back (0: no open offer).
--! include put_back
local offer = redis.call('HGET', KEYS[3], ARGV[1])
if not offer then return 0 end
local value = redis.call('HGET', KEYS[1], offer)
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[2], offer)
redis.call('SREM', KEYS[9], offer)
if not value then return 0 end
redis.call('HDEL', KEYS[1], offer)
local q = tonumber(string.match(value, '^%d+:(%d+):'))
redis.call('DECRBY', KEYS[4], q)
put_back(KEYS[5], KEYS[6], KEYS[7], KEYS[8], q)
return q
