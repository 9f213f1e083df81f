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
--   [1] -> stocked total from the catalogue, a decimal integer in 0..MAX_STOCK
--   [2] -> units sold: the confirmed quantities in Postgres, 0..MAX_STOCK
-- Returns {available, held, sold} as written; {-1, 0, 0} when the SKU's
-- available counter exists; {-2, 0, 0} for bad arguments or a surviving
-- counter that is not an integer >= 0. Available is clamped at 0 when the
-- units sold (or sold and held) exceed stocked: an oversell already
-- happened, and reconcile shows it against the catalogue.

local stocked, sold = uint(ARGV[1]), uint(ARGV[2])
if not stocked or not sold or stocked > MAX_STOCK or sold > MAX_STOCK or not sku_of(0) then
  return {-2, 0, 0}
end
if redis.call("EXISTS", KEYS[1]) == 1 then
  return {-1, 0, 0}
end

local held = 0
local held_raw, sold_raw = mget(KEYS[2], KEYS[3])
if held_raw or sold_raw then
  -- Partial loss: trust the surviving counters over Postgres, since they
  -- also count the holds still open.
  held = counter(held_raw)
  if sold_raw then
    sold = counter(sold_raw)
  end
  if not held or not sold or held < 0 or sold < 0 then
    return {-2, 0, 0}
  end
end

return write_levels(math.max(stocked - held - sold, 0), held, sold)
