-- A sale's public serving figures (app/queue/services.serving): one call per sale per
-- stream-server process per tick, and one per micro-cache miss of GET /api/queue/{id}/serving.
-- KEYS: meta, stats, line, pre[, the sale's stream processes (a hash), joined, hb]
-- ARGV: [the calling stream process, its lease's end, the hash's TTL, now, user ids...]: a stream
--       process that holds streams of the sale renews its one lease here (app/queue/streams.py),
--       and now and then the heartbeat of the waiting fans it streams to (an open stream is a fan
--       on the page, as a poll is), all in one call
-- reply: {} when the sale is not in Redis, else {served_up_to, eta_rate, eta_rel, paused,
--        admit_per_minute, heartbeat_timeout, opens_at, closes_at, shuffled, waiting, pre_queue,
--        admitted_total}
--! include lanes
if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
if KEYS[5] then
  redis.call('HSET', KEYS[5], ARGV[1], ARGV[2])
  redis.call('EXPIRE', KEYS[5], tonumber(ARGV[3]))
  for i = 5, #ARGV do
    if redis.call('HEXISTS', KEYS[6], ARGV[i]) == 1 then redis.call('HSET', KEYS[7], ARGV[i], ARGV[4]) end
  end
end
local m = redis.call('HMGET', KEYS[1], 'paused', 'admit_per_minute', 'heartbeat_timeout', 'opens_at', 'closes_at',
                     'shuffled', 'lanes')
local s = redis.call('HMGET', KEYS[2], 'served_up_to', 'eta_rate', 'eta_rel', 'admitted_total')
-- these are the general line's figures: with priority lanes (app/queue/lanes.py) it is served at
-- least at its share of the rate, so the rates are scaled to it (an estimate on the safe side)
local share = general_share(lanes_of(m[7]))
return {s[1] or '0', at_share(s[2] or '0', share), s[3] or '1', m[1] or '0', at_share(m[2] or '1', share),
        m[3] or '60', m[4] or '0', m[5] or '',
        m[6] or '0', redis.call('ZCARD', KEYS[3]), redis.call('SCARD', KEYS[4]), s[4] or '0'}
