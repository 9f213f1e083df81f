-- commit.lua: the holds follow a confirmed row, for one order or a batch of
-- them in one call. Each order's holds under the row's hold token become
-- sold, once, and stay behind as tombstones for the retention window, so
-- that a retried reserve of the same order finds them and does not
-- decrement again. A hold under another token was taken by a delivery the
-- row did not rely on (a redelivery after the old hold's tombstone expired,
-- or after Redis lost it): it is released instead, its units never sold.
--
-- ARGV:
--   [1] -> tombstone retention, milliseconds (>= 1)
--   [2] -> the number of orders
--   then, for each order in turn: order id, the row's hold token ("" for a
--   row written before rows had one, which matches only holds written
--   before holds had one), and the number of SKUs S
-- KEYS, for each order in turn, five per SKU, the same layout as reserve.lua:
--   +1 -> sg:{SKU}:avail, +2 -> sg:{SKU}:held, +3 -> sg:{SKU}:sold,
--   +4 -> sg:{SKU}:hold:ORDER, +5 -> sg:{SKU}:deadlines
-- Returns four values per order: units moved to sold, holds committed now,
-- holds that were not there at all (released earlier, or never taken), and
-- units released because their hold was under another token. Holds committed
-- earlier count in none. -2, 0, 0, 0 means bad arguments for that order and
-- nothing of it changed; a retention that is not a decimal integer >= 1
-- (PEXPIRE would raise after the first write, or delete the tombstone) or an
-- unreadable header refuses the whole call with a single -2, 0, 0, 0. Bad
-- arguments are keys that are not one SKU's five keys with this order's hold
-- key, one SKU twice (it would be sold twice), and a counter that is not an
-- integer (a hand edit, logged). A hold whose qty is not a whole number is
-- logged and left alone.

local retention = uint(ARGV[1])

local function commit_one(order, token, n, first)
  if not order or not token or not sku_groups(order, first, n) then
    return -2, 0, 0, 0
  end
  -- Every read and check happens before the first write: Redis has no rollback.
  local sell, give = {}, {}
  local missing = 0
  for i = 1, n do
    local base = first + 5 * (i - 1)
    -- A hold to sell goes to sold (+3), one to give back to avail (+1):
    -- its token says which.
    local q, found, to = hold_units(base, n, order, function(tok)
      return tok == token and 3 or 1
    end)
    if not q then
      return -2, 0, 0, 0
    end
    if not found then
      missing = missing + 1
      redis.log(redis.LOG_WARNING, "stockgate commit: no hold at " .. KEYS[base + 4])
    end
    sell[i], give[i] = to == 3 and q or 0, to == 1 and q or 0
  end

  local units, lines, released = 0, 0, 0
  for i = 1, n do
    local base = first + 5 * (i - 1)
    if sell[i] > 0 then
      move_held(base, sell[i], 3, order)
      redis.call("HSET", KEYS[base + 4], "state", "committed")
      redis.call("PEXPIRE", KEYS[base + 4], retention)
      units, lines = units + sell[i], lines + 1
    elseif give[i] > 0 then
      move_held(base, give[i], 1, order)
      redis.call("DEL", KEYS[base + 4])
      released = released + give[i]
    end
  end
  return units, lines, missing, released
end

local count = uint(ARGV[2])
if not retention or retention < 1 or not count then
  return {-2, 0, 0, 0}
end
local out = {}
local a, first = 3, 0
for _ = 1, count do
  local n = uint(ARGV[a + 2])
  if not n or n < 1 then
    out[#out + 1], out[#out + 2], out[#out + 3], out[#out + 4] = -2, 0, 0, 0
    break
  end
  local units, lines, missing, released = commit_one(ARGV[a], ARGV[a + 1], n, first)
  out[#out + 1], out[#out + 2], out[#out + 3], out[#out + 4] = units, lines, missing, released
  a, first = a + 3, first + 5 * n
end
return out
