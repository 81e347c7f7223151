-- An SSE stream's lease (app/queue/streams.py). KEYS: the user's streams (a zset of
-- "<process>:<stream>" scored by opening time), the sale's stream processes (a hash: process ->
-- the end of its lease, "<process>#n" -> how many streams of the sale it holds).
-- ARGV: process, stream id, now, the process lease's end, user cap, sale cap, the user set's TTL,
--       the process hash's TTL
-- A stream lives as long as its process's lease: each process renews one lease per sale per tick
-- (SERVING), so keeping streams alive costs Redis nothing per stream. A process that died takes
-- its streams with it when its lease lapses.
local process, stream, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local procs = redis.call('HGETALL', KEYS[2])
local live = {}
for i = 1, #procs, 2 do
  local field = procs[i]
  if not string.find(field, '#', 1, true) then
    if tonumber(procs[i + 1]) > now then
      live[field] = true
    else
      redis.call('HDEL', KEYS[2], field, field .. '#n')
    end
  end
end
live[process] = true
local total = 0
for i = 1, #procs, 2 do
  local owner = string.match(procs[i], '^(.*)#n$')
  if owner and live[owner] then total = total + tonumber(procs[i + 1]) end
end
local mine = 0
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if live[string.match(member, '^([^:]*):')] then
    mine = mine + 1
  else
    redis.call('ZREM', KEYS[1], member)
  end
end
if mine >= tonumber(ARGV[5]) then return 'user' end
if total >= tonumber(ARGV[6]) then return 'event' end
redis.call('ZADD', KEYS[1], now, process .. ':' .. stream)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[7]))
redis.call('HSET', KEYS[2], process, ARGV[4])
redis.call('HINCRBY', KEYS[2], process .. '#n', 1)
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[8]))
return 'ok'
