-- Shared: the sale's priority lanes (app/queue/lanes.py) as meta's "name|share|opens_at;..." spells
-- them. Their fans share one zset in one score band per lane: lane i's line number n is the score
-- i * LANE_BAND + n (the draw's numbers are negative).
local LANE_BAND = 1e12

-- the lanes, in order (shares as fractions)
local function lanes_of(spec)
  local out = {}
  if not spec or spec == '' then return out end
  for part in string.gmatch(spec, '[^;]+') do
    local name, share, opens = string.match(part, '^([^|]*)|([^|]*)|([^|]*)$')
    table.insert(out, {name = name, share = tonumber(share), opens_at = tonumber(opens), index = #out + 1})
  end
  return out
end

local function lane_named(lanes, name)
  for _, lane in ipairs(lanes) do if lane.name == name then return lane end end
  return nil
end

-- the general line's share of the admissions: what the lanes leave it
local function general_share(lanes)
  local share = 1
  for _, lane in ipairs(lanes) do share = share - lane.share end
  return share
end

-- a rate (a reply's text) at a line's share of it: the line moves at least that fast (faster
-- while another line is empty), so an estimate from it stays on the safe side
local function at_share(rate, share)
  if share == 1 then return rate end
  return tostring(tonumber(rate) * share)
end
