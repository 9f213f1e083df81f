-- rebuild.lua: restore one SKU's counters from Postgres after Redis lost
-- them. It never touches a live SKU: if the available counter exists,
-- nothing changes.
--
--   All three counters gone (Redis restarted empty): available = stocked -
--   sold, held = 0, sold = the confirmed quantities from Postgres.
--   Only available gone (a partial loss; held and sold survived with the
--   holds they count): available = stocked - held - sold, from the
--   surviving counters, which is I1 solved for available.
--
-- KEYS:
--   [1] -> sg:{SKU}:avail
--   [2] -> sg:{SKU}:held
--   [3] -> sg:{SKU}:sold
-- ARGV:
--   [1] -> stocked total from the catalogue, a decimal integer >= 0
--   [2] -> units sold: the confirmed quantities in Postgres, >= 0
-- Returns {available, held, sold} as written; {-1, 0, 0} when the SKU's
-- available counter exists; {-2, 0, 0} for bad arguments or a surviving
-- counter that is not an integer. Available is clamped at 0 when the units
-- sold (or sold and held) exceed stocked: an oversell already happened,
-- and reconcile shows it against the catalogue.

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
if redis.call("EXISTS", KEYS[1]) == 1 then
  return {-1, 0, 0}
end

-- A counter as INCRBY and DECRBY read it; nil when it is not an integer.
local function parse_counter(v)
  if not string.match(v, "^%-?%d+$") or #v > 16 then
    return nil
  end
  return tonumber(v)
end

local held = 0
local held_raw = redis.call("GET", KEYS[2])
local sold_raw = redis.call("GET", KEYS[3])
if held_raw or sold_raw then
  -- Partial loss: trust the surviving counters over Postgres, since they
  -- also count the holds still open.
  if held_raw then
    held = parse_counter(held_raw)
  end
  if sold_raw then
    sold = parse_counter(sold_raw)
  end
  if held == nil or sold == nil or held < 0 or sold < 0 then
    return {-2, 0, 0}
  end
end

local avail = stocked - held - sold
if avail < 0 then
  avail = 0
end
redis.call("SET", KEYS[1], avail)
redis.call("SET", KEYS[2], held)
redis.call("SET", KEYS[3], sold)
return {avail, held, sold}
