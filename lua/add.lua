-- add.lua: restock one SKU by N units. A SKU that was never stocked starts
-- at N available.
--
-- KEYS:
--   [1] -> sg:{SKU}:avail
--   [2] -> sg:{SKU}:held
--   [3] -> sg:{SKU}:sold
-- ARGV:
--   [1] -> N, a decimal integer >= 1
-- Returns {available, held, sold} after the change, or {-2, 0, 0} for bad arguments.

local MAX_STOCK = 1000000000000

local raw = ARGV[1]
if #KEYS ~= 3 or #ARGV ~= 1 or type(raw) ~= "string" or not string.match(raw, "^%d+$")
  or #raw > 13 or tonumber(raw) < 1 or tonumber(raw) > MAX_STOCK then
  return {-2, 0, 0}
end
local qty = tonumber(raw)
local avail = tonumber(redis.call("GET", KEYS[1]) or "0")
local held = tonumber(redis.call("GET", KEYS[2]) or "0")
local sold = tonumber(redis.call("GET", KEYS[3]) or "0")
if avail == nil or held == nil or sold == nil or avail + qty > MAX_STOCK then
  return {-2, 0, 0}
end

redis.call("SET", KEYS[1], avail + qty)
redis.call("SET", KEYS[2], held)
redis.call("SET", KEYS[3], sold)
return {avail + qty, held, sold}
