-- rebuild.lua: restore one SKU's counters from Postgres after Redis lost
-- them: available = stocked - sold, held = 0, sold = sold. It only ever
-- creates counters: if any of the three exists, the SKU is live and nothing
-- changes, so a rebuild can never overwrite a running sale.
--
-- KEYS:
--   [1] -> sg:{SKU}:avail
--   [2] -> sg:{SKU}:held
--   [3] -> sg:{SKU}:sold
-- ARGV:
--   [1] -> stocked total from the catalogue, a decimal integer >= 0
--   [2] -> units sold: the confirmed quantities in Postgres, >= 0
-- Returns {available, held, sold} as written; {-1, 0, 0} when the SKU has
-- counters already; {-2, 0, 0} for bad arguments. Available is clamped at
-- 0 when sold exceeds stocked (an oversell already happened; reconcile
-- shows it).

local MAX_STOCK = 1000000000000

local function parse_qty(s)
  if type(s) ~= "string" or not string.match(s, "^%d+$") or #s > 13 then
    return nil
  end
  local n = tonumber(s)
  if n > MAX_STOCK then
    return nil
  end
  return n
end

if #KEYS ~= 3 or #ARGV ~= 2 then
  return {-2, 0, 0}
end
local prefix = string.match(KEYS[1], "^(.+):avail$")
if not prefix or KEYS[2] ~= prefix .. ":held" or KEYS[3] ~= prefix .. ":sold" then
  return {-2, 0, 0}
end
local stocked = parse_qty(ARGV[1])
local sold = parse_qty(ARGV[2])
if stocked == nil or sold == nil then
  return {-2, 0, 0}
end
if redis.call("EXISTS", KEYS[1], KEYS[2], KEYS[3]) > 0 then
  return {-1, 0, 0}
end

local avail = stocked - sold
if avail < 0 then
  avail = 0
end
redis.call("SET", KEYS[1], avail)
redis.call("SET", KEYS[2], 0)
redis.call("SET", KEYS[3], sold)
return {avail, 0, sold}
