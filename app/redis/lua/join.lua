-- ARGV: user, now, rate limit per second, event id, proof-of-work nonce ('' when none was sent)
--! include prelude
local user, now, limit = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local refused = refuse_caller(limit)
if refused then return refused end
local meta = redis.call('HMGET', K_META, 'prequeue_opens_at', 'opens_at', 'closes_at', 'shuffled', 'pow_difficulty',
                        'pow_current', 'pow_threshold')
-- an adaptive proof of work counts the attempts; the advancer turns them into the difficulty
if (tonumber(meta[7] or '0') or 0) > 0 then redis.call('HINCRBY', K_STATS, 'join_attempts', 1) end
local v = view(user, now)
local has_place = v[1] == 'admitted' or v[1] == 'waiting' or v[1] == 'pre_queue'
-- proof of work (hashcash): SHA-1 of "<event>:<user>:<nonce>" must start with `difficulty` zero
-- bits, so every account a bot adds costs it CPU time. The sale's own difficulty or the adaptive
-- one, whichever is higher; a fan who has a place is not asked again when it rises
local difficulty = math.max(tonumber(meta[5] or '0') or 0, tonumber(meta[6] or '0') or 0)
if difficulty > 0 and not has_place then
  local digest = redis.sha1hex(ARGV[4] .. ':' .. user .. ':' .. (ARGV[5] or ''))
  local zeros = 0
  for i = 1, #digest do
    local nibble = tonumber(string.sub(digest, i, i), 16)
    if nibble == 0 then
      zeros = zeros + 4
    else
      if nibble == 1 then zeros = zeros + 3 elseif nibble <= 3 then zeros = zeros + 2
      elseif nibble <= 7 then zeros = zeros + 1 end
      break
    end
    if zeros >= difficulty then break end
  end
  if (ARGV[5] or '') == '' or zeros < difficulty then return {'pow_required', difficulty} end
end
if now < tonumber(meta[1]) then return {'not_open', meta[1]} end
if meta[3] and meta[3] ~= '' and now >= tonumber(meta[3]) then return {'closed', meta[3]} end
-- registering a channel later marks every sale in this set notifiable. In cluster mode the
-- user's keys live in other slots: the caller did the SADD and read the device cache before
-- this call, and passes what it read as ARGV[6] ('1' or '0'); KEYS[14], KEYS[15] are absent.
if (ARGV[6] or '') == '' then
  redis.call('SADD', KEYS[15], ARGV[4])
  redis.call('EXPIRE', KEYS[15], 604800)  -- kept a week after the user's last join (keys.RETENTION)
  if redis.call('EXISTS', KEYS[14]) == 1 then redis.call('SADD', K_NOTIF, user) end
elseif ARGV[6] == '1' then
  redis.call('SADD', K_NOTIF, user)
end
if has_place then
  redis.call('HSET', K_HB, user, now)
  return reply(user, now, 0)
end
-- a new place: a lapsed admission is closed first so the slot and the counters stay honest
if redis.call('ZREM', K_ACTIVE, user) == 1 then
  redis.call('HINCRBY', K_STATS, 'expired_total', 1)
  emit('AdmissionExpired', user, 'reason', 'window_lapsed', now)
end
redis.call('HDEL', K_EXPIRED, user)
if now < tonumber(meta[2]) and meta[4] ~= '1' then
  redis.call('SADD', K_PRE, user)
else
  redis.call('ZADD', K_LINE, redis.call('INCR', K_SEQ), user)
end
redis.call('HSET', K_JOINED, user, now)
redis.call('HSET', K_HB, user, now)
redis.call('HINCRBY', K_STATS, 'joined_total', 1)
emit('QueueJoined', user, nil, nil, now)
return reply(user, now, 1)
