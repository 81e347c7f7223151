-- Shared Lua helpers. ``view`` answers "where is this user" without changing anything.
--! include lanes
local K_META, K_LINE, K_PRE, K_JOINED, K_HB, K_ACTIVE = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local K_NOTIF, K_EXPIRED, K_SEQ, K_STATS, K_EVENTS = KEYS[7], KEYS[8], KEYS[9], KEYS[10], KEYS[11]
local K_LANES, K_CODES, K_LANEOF = KEYS[12], KEYS[13], KEYS[14]
-- the user's lane ('' for the general line) and ticket limit ('' for the sale's own)
local function lane_of(user)
  local v = redis.call('HGET', K_LANEOF, user)
  if not v then return '', '' end
  local name, limit = string.match(v, '^([^|]*)|([^|]*)$')
  return name, limit
end
-- the events stream is never trimmed: an event leaves it only once the drain has copied it to
-- the outbox (app/queue/events.py); its lag is a metric with an alert (QueueEventsUndrained)

local function emit(kind, user, extra_k, extra_v, now)
  if extra_k then
    redis.call('XADD', K_EVENTS, '*', 'type', kind, 'user_id', user, 'at', now,
               extra_k, extra_v)
  else
    redis.call('XADD', K_EVENTS, '*', 'type', kind, 'user_id', user, 'at', now)
  end
end

local function view(user, now)
  local until_ = redis.call('ZSCORE', K_ACTIVE, user)
  if until_ then
    if tonumber(until_) > now then return {'admitted', -1, until_} end
    return {'expired', -1, 'window_lapsed'}
  end
  local rank = redis.call('ZRANK', K_LINE, user)
  if rank then return {'waiting', rank, '', redis.call('ZSCORE', K_LINE, user)} end
  local score = redis.call('ZSCORE', K_LANES, user)
  if score then
    -- a lane's fans are ahead of each other only: the rank is counted within its band
    local base = math.floor((tonumber(score) + LANE_BAND / 2) / LANE_BAND) * LANE_BAND
    local ahead = redis.call('ZCOUNT', K_LANES, base - LANE_BAND / 2, '(' .. score)
    return {'waiting', ahead, '', string.format('%d', tonumber(score) - base)}
  end
  if redis.call('SISMEMBER', K_PRE, user) == 1 then return {'pre_queue', -1, ''} end
  local reason = redis.call('HGET', K_EXPIRED, user)
  if reason then return {'expired', -1, reason} end
  return {'not_in_queue', -1, ''}
end

-- reply: state, rank, detail, published line speed/s (app/queue/eta.py), paused, pre-queue size,
--        created, configured rate/min, heartbeat timeout, opens_at, the speed's relative
--        uncertainty (everything the estimate needs: one trip), the place's line number ('' when
--        not in the line), the line number served up to (SERVING's figure), the join time, the
--        lane ('' for the general line) and the ticket limit ('' for the sale's). A lane's fan
--        gets the lane's opening and served-up-to figure; both rates are at the fan's line's share.
local function reply(user, now, created)
  local v = view(user, now)
  local lane_name, limit = lane_of(user)
  local eta = redis.call('HMGET', K_STATS, 'eta_rate', 'eta_rel', 'served_up_to')
  local m = redis.call('HMGET', K_META, 'paused', 'admit_per_minute', 'heartbeat_timeout', 'opens_at', 'lanes')
  local lanes = lanes_of(m[5])
  local opens_at, served, share = m[4] or '0', eta[3] or '0', general_share(lanes)
  local lane = lane_named(lanes, lane_name)
  if lane then
    opens_at, share = tostring(lane.opens_at), lane.share
    served = redis.call('HGET', K_STATS, 'served_up_to:' .. lane_name) or '0'
  end
  return {v[1], v[2], v[3], at_share(eta[1] or '0', share), m[1] or '0', redis.call('SCARD', K_PRE), created,
          at_share(m[2] or '1', share), m[3] or '60', opens_at, eta[2] or '1', v[4] or '', served,
          redis.call('HGET', K_JOINED, user) or '', lane_name, limit}
end

local function rate_limited(limit)
  if limit <= 0 then return nil end  -- unmetered caller (the SSE stream paces itself)
  local n = redis.call('INCR', KEYS[15])
  if n == 1 then redis.call('PEXPIRE', KEYS[15], 1000) end
  if n > limit then return redis.call('PTTL', KEYS[15]) end
  return nil
end

-- JOIN and STATUS: a revoked token, a sale not yet in Redis, or a caller over its rate limit
local function refuse_caller(limit)
  if redis.call('EXISTS', KEYS[16]) == 1 then return {'token_revoked'} end
  if redis.call('EXISTS', K_META) == 0 then return {'no_meta'} end
  local wait_ms = rate_limited(limit)
  if wait_ms then return {'rate_limited', wait_ms} end
  return nil
end
