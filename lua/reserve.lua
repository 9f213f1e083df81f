-- reserve.lua: take each order's hold on every one of its lines, all or
-- nothing per order, for one order or a batch of them in one call. Orders are
-- taken in turn, each read and checked before any of its writes, so orders
-- later in a batch see the stock the earlier ones left.
--
-- ARGV:
--   [1] -> the number of orders
--   then, for each order in turn:
--     order id, 1-64 bytes
--     hold token: names this hold, so that the row the order ends in can say
--       which hold it relied on (internal/stock makes a new one per call)
--     hold deadline, unix milliseconds (time comes from the caller)
--     the number of lines L, then L quantities, decimal integers >= 1
-- KEYS, for each order in turn, five per line, in line order:
--   +1 -> sg:{SKU}:avail       available units; a missing key means "not stocked"
--   +2 -> sg:{SKU}:held        units held by undecided orders
--   +3 -> sg:{SKU}:sold        units sold (unused here; kept so every script shares one layout)
--   +4 -> sg:{SKU}:hold:ORDER  this order's hold on SKU: hash {qty, deadline, state, tok}
--   +5 -> sg:{SKU}:deadlines   zset ORDER -> hold deadline, read by the sweeper
-- Returns four values per order, in the orders' order: code, line, n, token:
--   1, 0, 0, T    reserved now, under this call's token T
--   2, 0, 0, T    this order already holds every line (a repeat: nothing
--                 changed); T is the token of the hold that stands
--   3, 0, 0, T    this order already committed (a tombstone: nothing changed)
--   0, i, a, ""   line i is short: only a units are available; nothing changed
--  -1, i, 0, ""   line i's SKU was never stocked; nothing changed
--  -2, i, 0, ""   bad arguments at line i (0: the order's header); nothing of
--                 this order changed. A line count that is not a number >= 1
--                 ends the reply there: the later orders' keys cannot be found
--  -3, i, 0, ""   conflict: this order holds line i with another quantity, or
--                 holds some lines and not others, or its lines under two
--                 tokens; nothing changed
-- Bad arguments are keys that are not one SKU's five keys in the order above
-- (with this order's hold key), one SKU on two lines, a quantity that is not
-- a decimal integer >= 1, and a counter that is not an integer (a hand edit,
-- logged). A deadline that is not a number makes the order's first write,
-- ZADD, raise with nothing of it written. Limits that protect no counter
-- (MaxQty, a deadline in the future, the size of a batch) are
-- internal/stock's to check.

-- reserve_one takes one order's hold, reading its quantities from ARGV[a..]
-- and its keys after KEYS[first], and returns its four reply values.
local function reserve_one(order, token, deadline, n, a, first)
  -- A hold under an order id the Gate refuses could never be released or
  -- committed through it: its units would stay held.
  if not order or order == "" or #order > 64 or not token then
    return -2, 0, 0, ""
  end
  local ok, bad = sku_groups(order, first, n)
  if not ok then
    return -2, bad, 0, ""
  end

  -- Every read and check happens before the first write: Redis has no rollback.
  local qty = {}
  local found, committed, unheld, tok = 0, 0, nil, nil
  for i = 1, n do
    local q = uint(ARGV[a + i - 1])
    -- A negative qty would add stock; a fraction would make DECRBY raise.
    if not q or q < 1 then
      return -2, i, 0, ""
    end
    qty[i] = q
    local hold = redis.call("HMGET", KEYS[first + 5 * i - 1], "qty", "state", "tok")
    if not hold[1] then
      unheld = unheld or i
    elseif tonumber(hold[1]) ~= q or (tok and tok ~= (hold[3] or "")) then
      return -3, i, 0, ""
    else
      tok = hold[3] or ""
      found = found + 1
      if hold[2] == "committed" then
        committed = committed + 1
      end
    end
  end
  if found > 0 then
    if unheld then
      return -3, unheld, 0, ""
    end
    return committed > 0 and 3 or 2, 0, 0, tok
  end

  -- The hot path of a flash sale: as few calls as it safely can make, since
  -- every redis.call costs about as much as a small EVALSHA.
  for i = 1, n do
    local base = first + 5 * (i - 1)
    local raw_avail, raw_held = mget(KEYS[base + 1], KEYS[base + 2])
    if not raw_avail then
      return -1, i, 0, ""
    end
    local avail, held = counter(raw_avail), counter(raw_held)
    if not avail or not held then
      redis.log(redis.LOG_WARNING, "stockgate reserve: non-integer counter at " .. KEYS[base + 1]
        .. " or " .. KEYS[base + 2])
      return -2, i, 0, ""
    end
    if avail < qty[i] then
      return 0, i, math.max(avail, 0), ""
    end
    check_deadlines(n, KEYS[base + 5], order)
  end

  -- Every key's type and every counter was checked above, so after the first
  -- ZADD (which checks the deadline, and for one line the deadlines key) no
  -- call can raise.
  for i = 1, n do
    local base = first + 5 * (i - 1)
    redis.call("ZADD", KEYS[base + 5], deadline, order)
    redis.call("DECRBY", KEYS[base + 1], qty[i])
    redis.call("INCRBY", KEYS[base + 2], qty[i])
    redis.call("HSET", KEYS[base + 4], "qty", qty[i], "deadline", deadline, "state", "held", "tok", token)
  end
  return 1, 0, 0, token
end

local out = {}
local a, first = 2, 0
for _ = 1, uint(ARGV[1]) or 0 do
  local n = uint(ARGV[a + 3])
  if not n or n < 1 then
    out[#out + 1], out[#out + 2], out[#out + 3], out[#out + 4] = -2, 0, 0, ""
    break
  end
  local code, line, avail, tok = reserve_one(ARGV[a], ARGV[a + 1], ARGV[a + 2], n, a + 4, first)
  out[#out + 1], out[#out + 2], out[#out + 3], out[#out + 4] = code, line, avail, tok
  a, first = a + 4 + n, first + 5 * n
end
return out
