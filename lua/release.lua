-- release.lua: the compensating restock. Gives back exactly what the order's
-- holds recorded, once. Quantities come from the holds, never the caller.
--
-- KEYS, five per SKU, the same layout as reserve.lua:
--   +1 -> sg:{SKU}:avail, +2 -> sg:{SKU}:held, +3 -> sg:{SKU}:sold (unused),
--   +4 -> sg:{SKU}:hold:ORDER, +5 -> sg:{SKU}:deadlines
-- ARGV:
--   [1] -> order id
-- Returns {units, lines}: units given back and holds released. A hold that is
-- missing (already released) or committed is left alone and counts zero;
-- {-2, 0} means bad arguments and nothing changed.

local order = ARGV[1]
local n = #KEYS / 5
if order == nil or order == "" or #ARGV ~= 1 or n < 1 or #KEYS % 5 ~= 0 then
  return {-2, 0}
end

local qty = {}
for i = 1, n do
  local hold_key = KEYS[5 * (i - 1) + 4]
  local hold = redis.call("HMGET", hold_key, "qty", "state")
  if hold[1] and hold[2] == "held" then
    local q = tonumber(hold[1])
    if q == nil or q < 1 then
      redis.log(redis.LOG_WARNING, "stockgate release: corrupt hold " .. hold_key)
    else
      qty[i] = q
    end
  elseif not hold[1] then
    redis.log(redis.LOG_NOTICE, "stockgate release: no hold at " .. hold_key)
  end
end

local units, lines = 0, 0
for i = 1, n do
  if qty[i] then
    local base = 5 * (i - 1)
    redis.call("INCRBY", KEYS[base + 1], qty[i])
    redis.call("DECRBY", KEYS[base + 2], qty[i])
    redis.call("DEL", KEYS[base + 4])
    redis.call("ZREM", KEYS[base + 5], order)
    units = units + qty[i]
    lines = lines + 1
  end
end
return {units, lines}
