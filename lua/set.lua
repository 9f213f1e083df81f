-- set.lua: make exactly N units of one SKU available now. Held and sold are
-- left as they are (created at 0 for a new SKU).
--
-- KEYS:
--   [1] -> sg:{SKU}:avail
--   [2] -> sg:{SKU}:held
--   [3] -> sg:{SKU}:sold
-- ARGV:
--   [1] -> N, a decimal integer in 0..MAX_STOCK
-- Returns {available, held, sold} after the change, or {-2, 0, 0} for bad
-- arguments (keys that are not one SKU's three counters included) or a held
-- or sold counter that is not an integer; nothing changed then. Available is
-- not read: Set is how an operator repairs it.

local qty = uint(ARGV[1])
if not qty or qty > MAX_STOCK or not sku_of(0) then
  return {-2, 0, 0}
end
-- Written back as read, so a "1.5" must not pass: it would break every
-- later reserve.
local held, sold = mget(KEYS[2], KEYS[3])
held, sold = counter(held), counter(sold)
if not held or not sold then
  return {-2, 0, 0}
end
return write_levels(qty, held, sold)
