-- add.lua: restock one SKU by N units. A SKU that was never stocked starts
-- at N available.
--
-- KEYS:
--   [1] -> sg:{SKU}:avail
--   [2] -> sg:{SKU}:held
--   [3] -> sg:{SKU}:sold
-- ARGV:
--   [1] -> N, a decimal integer >= 1
-- Returns {available, held, sold} after the change, or {-2, 0, 0} for bad
-- arguments (keys that are not one SKU's three counters included) or a
-- counter that is not an integer; nothing changed then.

local MAX_STOCK = 1000000000000

-- A counter as INCRBY and DECRBY read it (a missing key is zero): writing
-- back a "1.5" that tonumber accepted would break every later reserve.
local function parse_counter(s)
  if not s then
    return 0
  end
  if not string.match(s, "^%-?%d+$") or #s > 16 then
    return nil
  end
  return tonumber(s)
end

local raw = ARGV[1]
if #KEYS ~= 3 or #ARGV ~= 1 or type(raw) ~= "string" or not string.match(raw, "^%d+$")
  or #raw > 13 or tonumber(raw) < 1 or tonumber(raw) > MAX_STOCK then
  return {-2, 0, 0}
end
local prefix = string.match(KEYS[1], "^(.+):avail$")
if not prefix or KEYS[2] ~= prefix .. ":held" or KEYS[3] ~= prefix .. ":sold" then
  return {-2, 0, 0}
end
local qty = tonumber(raw)
local avail = parse_counter(redis.call("GET", KEYS[1]))
local held = parse_counter(redis.call("GET", KEYS[2]))
local sold = parse_counter(redis.call("GET", KEYS[3]))
if avail == nil or held == nil or sold == nil or avail + qty > MAX_STOCK then
  return {-2, 0, 0}
end

redis.call("SET", KEYS[1], avail + qty)
redis.call("SET", KEYS[2], held)
redis.call("SET", KEYS[3], sold)
return {avail + qty, held, sold}
