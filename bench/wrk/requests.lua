-- wrk driver: each thread sends its own slice of pre-built requests, once each (mode "once")
-- or round-robin until the duration ends (mode "loop"). Lines of the request file:
--   METHOD <tab> PATH <tab> HEADER1: v1 | HEADER2: v2 <tab> BODY
-- Usage: wrk -t2 -c32 -d60s -s requests.lua URL -- FILE MODE NTHREADS
local threads = {}
local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

local function split(s, sep)
  local out = {}
  for piece in (s .. sep):gmatch("(.-)" .. sep) do table.insert(out, piece) end
  return out
end

function init(args)
  local file, mode, nthreads = args[1], args[2] or "loop", tonumber(args[3] or "1")
  once = mode == "once"
  reqs = {}
  local n = 0
  for line in io.lines(file) do
    if n % nthreads == id then
      local f = split(line, "\t")
      local headers = {}
      for _, h in ipairs(split(f[3] or "", " | ")) do
        local k, v = h:match("^([^:]+):%s*(.*)$")
        if k then headers[k] = v end
      end
      local body = f[4]
      if body == "" then body = nil end
      if body then headers["Content-Type"] = "application/json" end
      table.insert(reqs, wrk.format(f[1], f[2], headers, body))
    end
    n = n + 1
  end
  i = 0
  sent = 0
  codes = {}
  refused = {}  -- status -> the first answer's body with that status (>= 400), to say why
  -- wrk calls request() once on thread 0's state to check the script before it starts: that call
  -- must not use up a request
  probe = id == 0
end

function request()
  if probe then
    probe = false
    return reqs[1] or wrk.format("GET", "/healthz")
  end
  i = i + 1
  if i > #reqs then
    if once then  -- every request of this slice is out: health checks fill the slots until the
      return wrk.format("GET", "/healthz")  -- last answers are in (response() stops the thread)
    end
    i = 1
  end
  sent = sent + 1
  return reqs[i]
end

function response(status, headers, body)
  if status == 200 and once then return end  -- the health check above, not a measured answer
  codes[status] = (codes[status] or 0) + 1
  if status >= 400 and refused[status] == nil then refused[status] = (body or ""):sub(1, 400) end
  if once then
    local done = 0
    for _, c in pairs(codes) do done = done + c end
    if done >= #reqs then
      -- tell the runner this slice is answered: it stops wrk (SIGINT) once every thread said so
      io.write("WRKDONE\n")
      io.flush()
      wrk.thread:stop()
    end
  end
end

function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    local c = t:get("codes")
    for k, v in pairs(c) do total[tostring(k)] = (total[tostring(k)] or 0) + v end
  end
  local seen = {}
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("refused")) do
      if not seen[k] then
        seen[k] = true
        io.write(string.format("WRKREFUSED %d %s\n", k, (v:gsub("[\r\n]", " "))))
      end
    end
  end
  local parts = {}
  for k, v in pairs(total) do table.insert(parts, string.format('"%s": %d', k, v)) end
  io.write(string.format(
    'WRKJSON {"requests": %d, "seconds": %.3f, "p50_ms": %.2f, "p95_ms": %.2f, "p99_ms": %.2f, ' ..
    '"max_ms": %.2f, "socket_errors": %d, "codes": {%s}}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000, latency:percentile(95) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    table.concat(parts, ", ")))
end
