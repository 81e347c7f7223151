-- An SSE stream's lease (app/queue/streams.py). KEYS: user's streams, sale's streams.
-- ARGV: stream id, now, lease expiry, user cap, sale cap
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[2])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return 'user' end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[5]) then return 'event' end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
local ttl = math.ceil(tonumber(ARGV[3]) - tonumber(ARGV[2])) * 2
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('EXPIRE', KEYS[2], ttl)
return 'ok'
