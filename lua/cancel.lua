-- cancel.lua: a confirmed order cancelled after its sale (a refund, a
-- return) gives its units back to available, once per order and SKU.
-- Quantities come from the order's row (the caller reads it from Postgres):
-- the hold's tombstone may have expired long before the return. The hold
-- key is the marker that makes a second call change nothing: its state
-- becomes "returned" and it lives for the retention window; after that the
-- row's returned_at, in Postgres, keeps the caller from calling again.
--
-- Per SKU, by the state of the order's hold:
--   committed  its units are in sold: sold -> available
--   held, under the row's token
--              confirmed in Postgres but never committed (the worker died
--              between the two): held -> available, as release.lua does
--   held, under another token
--              a later delivery's hold, taken after the sale's tombstone
--              expired: it goes back (held -> available), and so do the
--              units the sale sold (sold -> available)
--   returned   already given back: nothing
--   missing    its tombstone expired, or Redis lost it and a rebuild counted
--              the order in sold from Postgres: sold -> available
--
-- KEYS, five per SKU, the same layout as reserve.lua:
--   +1 -> sg:{SKU}:avail, +2 -> sg:{SKU}:held, +3 -> sg:{SKU}:sold,
--   +4 -> sg:{SKU}:hold:ORDER, +5 -> sg:{SKU}:deadlines
-- ARGV:
--   [1] -> marker retention, milliseconds (>= 1)
--   [2] -> order id
--   [3] -> the row's hold token ("" for a row written before rows had one)
--   then one quantity per SKU, in key order: the row's, a decimal integer >= 1
-- Returns {returned, released, already}: units moved from sold, units moved
-- from held, and SKUs given back before. {-2, i, 0} means bad arguments at
-- SKU i (0 for the header): keys that are not one SKU's five with this
-- order's hold key, a SKU twice, a quantity or retention that is not a
-- decimal integer >= 1, a counter that is not an integer, or a held hold
-- whose qty is not (both logged).
-- {-1, i, 0} means SKU i has no available counter (Redis lost it: fail
-- closed until stockctl rebuild). {-4, i, s} means SKU i has only s sold,
-- less than it would give back (a drifted counter; reconcile shows it).
-- Nothing changed in any of these.

local retention, order, token = uint(ARGV[1]), ARGV[2], ARGV[3]
local n = math.floor(#KEYS / 5)
if not retention or retention < 1 or not order or not token or n < 1 or not sku_groups(order, 0, n) then
  return {-2, 0, 0}
end

-- Every read and check happens before the first write: Redis has no rollback.
-- The arguments first, so that a bad one is refused whatever the counters say.
local give, sell, qty = {}, {}, {}
for i = 1, n do
  qty[i] = uint(ARGV[3 + i])
  if not qty[i] or qty[i] < 1 then
    return {-2, i, 0}
  end
end
local already = 0
for i = 1, n do
  local base = 5 * (i - 1)
  local q = qty[i]
  local hold = redis.call("HMGET", KEYS[base + 4], "qty", "state", "tok")
  local raw_avail, raw_held, raw_sold = mget(KEYS[base + 1], KEYS[base + 2], KEYS[base + 3])
  if not raw_avail then
    return {-1, i, 0}
  end
  local held, sold = counter(raw_held), counter(raw_sold)
  if not counter(raw_avail) or not held or not sold then
    redis.log(redis.LOG_WARNING, "stockgate cancel: non-integer counter for " .. KEYS[base + 4])
    return {-2, i, 0}
  end
  local state = hold[2]
  if state == "returned" then
    already = already + 1
  elseif state == "held" then
    -- What the hold recorded goes back, as release.lua gives it back.
    local hq = uint(hold[1])
    if not hq or hq < 1 then
      redis.log(redis.LOG_WARNING, "stockgate cancel: corrupt hold " .. KEYS[base + 4])
      return {-2, i, 0}
    end
    check_deadlines(n, KEYS[base + 5], order)
    give[i] = hq
    if (hold[3] or "") ~= token then
      -- Not the sale's hold: the sale was committed and its tombstone is gone.
      if sold < q then
        return {-4, i, sold}
      end
      sell[i] = q
    end
  else
    -- Committed: the tombstone's qty is what was sold; missing: the row's.
    if state == "committed" then
      q = uint(hold[1]) or q
    end
    if sold < q then
      return {-4, i, sold}
    end
    sell[i] = q
  end
end

local returned, released = 0, 0
for i = 1, n do
  local base = 5 * (i - 1)
  if give[i] then
    move_held(base, give[i], 1, order)
    released = released + give[i]
  end
  if sell[i] then
    redis.call("DECRBY", KEYS[base + 3], sell[i])
    redis.call("INCRBY", KEYS[base + 1], sell[i])
    returned = returned + sell[i]
  end
  if give[i] or sell[i] then
    redis.call("HSET", KEYS[base + 4], "qty", sell[i] or give[i], "state", "returned")
    redis.call("PEXPIRE", KEYS[base + 4], retention)
  end
end
return {returned, released, already}
