-- ARGV: user, now, rate limit per second, event id, proof-of-work nonce ('' when none was sent),
--       access code digest ('' when none), the user's e-mail digest ('' when no code is sent),
--       [cluster mode: whether the user has a channel, '1' or '0']
-- KEYS: the sale's 14, the caller's rate limit and revocation key, the caller's failed code
--       attempts (17), [the user's device cache (18) and joined sales (19), absent in cluster mode]
--! include prelude
local user, now, limit = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local refused = refuse_caller(limit)
if refused then return refused end
local meta = redis.call('HMGET', K_META, 'prequeue_opens_at', 'opens_at', 'closes_at', 'shuffled', 'pow_difficulty',
                        'pow_current', 'pow_threshold', 'first_opens_at', 'lanes')
-- an adaptive proof of work counts the attempts; the advancer turns them into the difficulty
if (tonumber(meta[7] or '0') or 0) > 0 then redis.call('HINCRBY', K_STATS, 'join_attempts', 1) end

-- an access code's checks (app/queue/lanes.py): nil when redeemed, else the refusal. Guessing is
-- bounded: CODE_FAILURES wrong codes (unknown, or bound to another e-mail) in 10 minutes, then
-- every code is refused until the counter lapses
local CODE_FAILURES = 10
local function redeem(fan, digest, email_digest, at)
  local failures = tonumber(redis.call('GET', KEYS[17]) or '0')
  if failures >= CODE_FAILURES then return {'code_attempts', redis.call('PTTL', KEYS[17])} end
  local function failed(reason)
    if redis.call('INCR', KEYS[17]) == 1 then redis.call('EXPIRE', KEYS[17], 600) end
    redis.call('HINCRBY', K_STATS, 'code_failures', 1)
    return {reason, CODE_FAILURES - failures - 1}
  end
  local code = redis.call('HGET', K_CODES, digest)
  if not code then return failed('code_unknown') end
  local lane, uses, email, from, until_, limit, id = string.match(code,
    '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)$')
  if email ~= '' and email ~= email_digest then return failed('code_other_email') end
  if from ~= '' and at < tonumber(from) then return {'code_not_yet', from} end
  if until_ ~= '' and at >= tonumber(until_) then return {'code_expired', until_} end
  if tonumber(uses) <= 0 then
    redis.call('HINCRBY', K_STATS, 'code_used_up', 1)
    return {'code_used_up'}
  end
  redis.call('HSET', K_CODES, digest, table.concat({lane, tonumber(uses) - 1, email, from, until_, limit, id}, '|'))
  redis.call('HSET', K_LANEOF, fan, lane .. '|' .. limit)
  redis.call('HINCRBY', K_STATS, 'redeemed:' .. lane, 1)
  redis.call('XADD', K_EVENTS, '*', 'type', 'CodeRedeemed', 'user_id', fan, 'at', at, 'code_id', id, 'lane', lane)
  return nil
end

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
-- an access code puts the fan in its lane for good (app/queue/lanes.py); one who redeemed before
-- stays in that lane without spending another use
local redeemed = false
if (ARGV[6] or '') ~= '' and not redis.call('HGET', K_LANEOF, user) then
  local refused_code = redeem(user, ARGV[6], ARGV[7] or '', now)
  if refused_code then return refused_code end
  redeemed = true
end
-- a new number at the tail of the fan's line: their lane's, else the general line
local lanes = lanes_of(meta[9])
local function take_number()
  local lane = lane_named(lanes, (lane_of(user)))
  if lane then
    local number = redis.call('HINCRBY', K_STATS, 'seq:' .. lane.name, 1)
    redis.call('ZADD', K_LANES, lane.index * LANE_BAND + number, user)
  else
    redis.call('ZADD', K_LINE, redis.call('INCR', K_SEQ), user)
  end
end
-- registering a channel later marks every sale in this set notifiable. In cluster mode the
-- user's keys live in other slots: the caller did the SADD and read the device cache before
-- this call, and passes what it read as ARGV[8] ('1' or '0'); KEYS[18], KEYS[19] are absent.
if (ARGV[8] or '') == '' then
  redis.call('SADD', KEYS[19], ARGV[4])
  redis.call('EXPIRE', KEYS[19], 604800)  -- kept a week after the user's last join (keys.RETENTION)
  if redis.call('EXISTS', KEYS[18]) == 1 then redis.call('SADD', K_NOTIF, user) end
elseif ARGV[8] == '1' then
  redis.call('SADD', K_NOTIF, user)
end
if has_place then
  -- a fan waiting in the general line who brings a code moves to the tail of the code's lane (a
  -- gap is left behind, as when anyone leaves); in the pre-queue the draw places them in it, and
  -- an admitted fan's pass carries the lane from now on
  if redeemed and v[1] == 'waiting' and lane_named(lanes, (lane_of(user)))
     and redis.call('ZREM', K_LINE, user) == 1 then
    take_number()
  end
  redis.call('HSET', K_HB, user, now)
  return reply(user, now, 0)
end
-- a new place: a lapsed admission is closed first so the slot and the counters stay honest
if redis.call('ZREM', K_ACTIVE, user) == 1 then
  redis.call('HINCRBY', K_STATS, 'expired_total', 1)
  emit('AdmissionExpired', user, 'reason', 'window_lapsed', now)
end
redis.call('HDEL', K_EXPIRED, user)
-- before the first opening (a lane's may come before the sale's) and its draw: the pre-queue
if now < math.min(tonumber(meta[2]), tonumber(meta[8] or '') or tonumber(meta[2])) and meta[4] ~= '1' then
  redis.call('SADD', K_PRE, user)
else
  take_number()
end
redis.call('HSET', K_JOINED, user, now)
redis.call('HSET', K_HB, user, now)
redis.call('HINCRBY', K_STATS, 'joined_total', 1)
emit('QueueJoined', user, nil, nil, now)
return reply(user, now, 1)
