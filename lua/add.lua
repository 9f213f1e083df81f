-- add.lua: restock one SKU by N units. A SKU that was never stocked starts
-- at N available.
--
-- KEYS:
--   [1] -> sg:{SKU}:avail
--   [2] -> sg:{SKU}:held
--   [3] -> sg:{SKU}:sold
-- ARGV:
--   [1] -> N, a decimal integer (internal/stock sends >= 1)
-- Returns {available, held, sold} after the change, or {-2, 0, 0} for bad
-- arguments (keys that are not one SKU's three counters included), a
-- counter that is not an integer, or available going past MAX_STOCK;
-- nothing changed then.

local qty = uint(ARGV[1])
if not qty or not sku_of(0) then
  return {-2, 0, 0}
end
local avail, held, sold = mget(KEYS[1], KEYS[2], KEYS[3])
avail, held, sold = counter(avail), counter(held), counter(sold)
if not avail or not held or not sold or avail + qty > MAX_STOCK then
  return {-2, 0, 0}
end
return write_levels(avail + qty, held, sold)
