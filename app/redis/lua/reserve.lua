-- The whole accept path of POST /api/tickets/reserve in one call.
-- KEYS: 1 active (admissions)  2 idempotency  3 user units  4 gate  5 holds  6 reserve stream
--       7 pending records  8 the access token's revocation key  9 waitlist  10 waitlist pool
--       11 waitlist stats  12 pending ids per user  13 pending units per section
-- ARGV: 1 user  2 pass exp  3 now  4 idempotency field  5 request hash  6 reservation id
--       7 quantity  8 max per user  9 request record (JSON)  10 section
-- Reply: {outcome[, detail]}; 'accepted' means the request is on the stream (durable in Redis).
--! include take
--! include intake
local early = refused_before()
if early then return early end
local until_ = redis.call('ZSCORE', KEYS[1], ARGV[1])
local now = tonumber(ARGV[3])
if not until_ or tonumber(until_) <= now or math.floor(tonumber(until_)) ~= tonumber(ARGV[2]) then
  return {'admission_inactive'}
end
local limited = over_limit()
if limited then return limited end
local left = take(KEYS[4], KEYS[5], KEYS[9], KEYS[10], KEYS[11], tonumber(ARGV[7]), ARGV[3])
if left == -2 then return {'no_gate'} end
if left == -1 then return {'sold_out'} end
return accept(KEYS[12], KEYS[13])
