-- ARGV: user, now, rate limit per second (0: unmetered). Polling is the heartbeat that keeps a place alive.
--! include prelude
local user, now, limit = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local refused = refuse_caller(limit)
if refused then return refused end
if redis.call('HEXISTS', K_JOINED, user) == 1 then redis.call('HSET', K_HB, user, now) end
return reply(user, now, 0)
