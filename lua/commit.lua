-- commit.lua: held becomes sold, once. The hold stays behind as a tombstone
-- for the retention window so that a retried reserve of the same order finds
-- it and does not decrement again.
--
-- KEYS, five per SKU, the same layout as reserve.lua:
--   +1 -> sg:{SKU}:avail (unused), +2 -> sg:{SKU}:held, +3 -> sg:{SKU}:sold,
--   +4 -> sg:{SKU}:hold:ORDER, +5 -> sg:{SKU}:deadlines
-- ARGV:
--   [1] -> order id
--   [2] -> tombstone retention, milliseconds (>= 1)
-- Returns {units, lines, missing}: units moved to sold, holds committed now,
-- and holds that were not there at all (released, or never taken). Holds
-- committed earlier count in none. {-2, 0, 0} means bad arguments.

local order = ARGV[1]
local retention = ARGV[2]
local n = #KEYS / 5
if order == nil or order == "" or #ARGV ~= 2 or n < 1 or #KEYS % 5 ~= 0
  or type(retention) ~= "string" or not string.match(retention, "^%d+$")
  or #retention > 15 or tonumber(retention) < 1 then
  return {-2, 0, 0}
end

local qty = {}
local missing = 0
for i = 1, n do
  local hold_key = KEYS[5 * (i - 1) + 4]
  local hold = redis.call("HMGET", hold_key, "qty", "state")
  if not hold[1] then
    missing = missing + 1
    redis.log(redis.LOG_WARNING, "stockgate commit: no hold at " .. hold_key)
  elseif hold[2] == "held" then
    local q = tonumber(hold[1])
    if q == nil or q < 1 then
      redis.log(redis.LOG_WARNING, "stockgate commit: corrupt hold " .. hold_key)
    else
      qty[i] = q
    end
  end
end

local units, lines = 0, 0
for i = 1, n do
  if qty[i] then
    local base = 5 * (i - 1)
    redis.call("DECRBY", KEYS[base + 2], qty[i])
    redis.call("INCRBY", KEYS[base + 3], qty[i])
    redis.call("HSET", KEYS[base + 4], "state", "committed")
    redis.call("PEXPIRE", KEYS[base + 4], retention)
    redis.call("ZREM", KEYS[base + 5], order)
    units = units + qty[i]
    lines = lines + 1
  end
end
return {units, lines, missing}
