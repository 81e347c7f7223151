-- KEYS: 1 active  2 gate  3 WL  4 WLQ  5 SEQ  6 user units  7 USEROFFER  8 POOL
-- ARGV: user, now, quantity, max per user
-- Reply: {'joined'|'already', position} | {'offered'} | {'admission_inactive'} | {'not_sold_out'} |
--        {'limit_exceeded', units}
if redis.call('HEXISTS', KEYS[7], ARGV[1]) == 1 then return {'offered'} end
local rank = redis.call('ZRANK', KEYS[3], ARGV[1])
if rank then return {'already', rank + 1} end
local until_ = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not until_ or tonumber(until_) <= tonumber(ARGV[2]) then return {'admission_inactive'} end
if tonumber(redis.call('GET', KEYS[2]) or '0') > 0 then return {'not_sold_out'} end
local units = tonumber(redis.call('HGET', KEYS[6], ARGV[1]) or '0')
if units + tonumber(ARGV[3]) > tonumber(ARGV[4]) then return {'limit_exceeded', tostring(units)} end
redis.call('ZADD', KEYS[3], redis.call('INCR', KEYS[5]), ARGV[1])
redis.call('HSET', KEYS[4], ARGV[1], ARGV[3])
return {'joined', redis.call('ZRANK', KEYS[3], ARGV[1]) + 1}
