-- release.lua: the compensating restock. Gives back exactly what the order's
-- holds recorded, once, whatever their token: the row that stands is not
-- confirmed, so no hold of the order is sold. Quantities come from the
-- holds, never the caller.
--
-- KEYS, five per SKU, the same layout as reserve.lua:
--   +1 -> sg:{SKU}:avail, +2 -> sg:{SKU}:held, +3 -> sg:{SKU}:sold (unused),
--   +4 -> sg:{SKU}:hold:ORDER, +5 -> sg:{SKU}:deadlines
-- ARGV:
--   [1] -> order id
-- Returns {units, lines}: units given back and holds released. A hold that is
-- missing (already released) or committed is left alone and counts zero;
-- {-2, 0} means bad arguments and nothing changed. Bad arguments are keys
-- that are not one SKU's five keys with this order's hold key, one SKU twice
-- (it would be given back twice), and a counter that is not an integer (a
-- hand edit, logged). A hold whose qty is not a whole number is logged and
-- left alone.

local order = ARGV[1]
local n = math.floor(#KEYS / 5)
if not order or n < 1 or not sku_groups(order, 0, n) then
  return {-2, 0}
end

-- Every read and check happens before the first write: Redis has no rollback.
local qty = {}
for i = 1, n do
  local q, found = hold_units(5 * (i - 1), n, order, 1) -- back to avail, KEYS[base + 1]
  if not q then
    return {-2, 0}
  end
  if not found then
    redis.log(redis.LOG_NOTICE, "stockgate release: no hold at " .. KEYS[5 * i - 1])
  end
  qty[i] = q
end

local units, lines = 0, 0
for i = 1, n do
  if qty[i] > 0 then
    local base = 5 * (i - 1)
    move_held(base, qty[i], 1, order)
    redis.call("DEL", KEYS[base + 4])
    units, lines = units + qty[i], lines + 1
  end
end
return {units, lines}
