-- prelude.lua: the helpers the scripts share, each written once. lua.go puts
-- this file in front of every script, so each EVAL or EVALSHA still sends
-- one whole script; run one by hand the same way (README.md).
--
-- The scripts trust their one caller, internal/stock, which checks every
-- argument in Go. What is checked here is only what a wrong caller could
-- otherwise corrupt counters with: keys of two SKUs or of another order, a
-- SKU given twice, a quantity that would add stock or that INCRBY would
-- refuse after the first write (Redis has no rollback).
--
-- Define each name at the start of a line as "local NAME" or "local function
-- NAME": .luacheckrc reads those lines to let the scripts use the names.

-- The most units one SKU may be set or restocked to, far below where INCRBY
-- overflows or a Lua number stops holding integers exactly.
local MAX_STOCK = 1e12

-- s as a number when it is a decimal integer of at most 15 digits (exact in
-- a Lua number), else nil: "-1", "1.5", "1e3", "0x10", " 1", "" and nil are
-- all nil. tonumber alone would take most of them.
local function uint(s)
  if not s or #s > 15 or not string.find(s, "^%d+$") then
    return nil
  end
  return tonumber(s)
end

-- A counter's value as INCRBY and DECRBY read it: 0 for a missing key, nil
-- when they would refuse it (a hand edit such as "1.5"), which must stop the
-- script before its first write.
local function counter(v)
  if not v then
    return 0
  end
  if #v > 16 or not string.find(v, "^%-?%d+$") then
    return nil
  end
  return tonumber(v)
end

-- The values at the keys given, false where a key is missing, read in one
-- MGET. MGET answers a key of another type with nil instead of raising, so
-- each nil is read again with GET, which raises WRONGTYPE now rather than
-- leave INCRBY to raise after a write. Set and Add create every counter, so
-- the extra GET is rare.
local function mget(...)
  local v = redis.call("MGET", ...)
  for i = 1, #v do
    if not v[i] then
      v[i] = redis.call("GET", (select(i, ...)))
    end
  end
  return unpack(v)
end

-- The SKU prefix ("sg:{SKU}") when KEYS[base+1], [base+2] and [base+3] are
-- one SKU's avail, held and sold counters, else nil. Keys of two SKUs would
-- move units from one SKU's counters to another's.
local function sku_of(base)
  local p = string.match(KEYS[base + 1], "^(.+):avail$")
  if p and KEYS[base + 2] == p .. ":held" and KEYS[base + 3] == p .. ":sold" then
    return p
  end
  return nil
end

-- The order scripts take five keys per SKU of an order, and the orders of
-- one call one after another; group i of an order whose keys start after
-- KEYS[first] is KEYS[first+5*(i-1)+1 .. first+5*i]:
--   +1 sg:{SKU}:avail, +2 sg:{SKU}:held, +3 sg:{SKU}:sold,
--   +4 sg:{SKU}:hold:ORDER, +5 sg:{SKU}:deadlines
-- sku_groups returns true when the order's n groups are each one SKU's keys
-- with this order's own hold and no SKU repeats, else nil and the 1-based
-- bad group: another order's hold would be taken or written under this
-- order's deadline, and a SKU twice would be counted twice. n groups past
-- the end of KEYS are bad too.
local function sku_groups(order, first, n)
  if first + 5 * n > #KEYS then
    return nil, 1
  end
  local seen = {}
  for i = 1, n do
    local base = first + 5 * (i - 1)
    local p = sku_of(base)
    if not p or seen[p] or KEYS[base + 4] ~= p .. ":hold:" .. order or KEYS[base + 5] ~= p .. ":deadlines" then
      return nil, i
    end
    seen[p] = true
  end
  return true
end

-- Raises now, before any write, when a deadlines key is not a sorted set. An
-- order over one SKU skips the call: its first write goes to that key (ZADD
-- or ZREM), which raises then with nothing of the order written yet.
local function check_deadlines(n, key, order)
  if n > 1 then
    redis.call("ZSCORE", key, order)
  end
end

-- What release or commit may move for the group whose keys start after
-- KEYS[base] (of n groups): the qty of the order's hold while it is held, or
-- 0 when the hold is committed or gone, which makes both scripts idempotent.
-- Then whether a hold was there at all, and where its units go: to is the
-- offset of the counter they go to (1 avail, 3 sold), or a function of the
-- hold's token ("" for a hold written before holds had one) that says. A
-- qty that reserve could not have written is logged and left alone. nil,
-- logged, when held or that counter is not an integer: the caller must
-- refuse the call.
local function hold_units(base, n, order, to)
  local key = KEYS[base + 4]
  local hold = redis.call("HMGET", key, "qty", "state", "tok")
  if type(to) == "function" then
    to = to(hold[3] or "")
  end
  if hold[2] ~= "held" then
    return 0, hold[1] ~= false, to
  end
  local q = uint(hold[1])
  if not q or q < 1 then
    redis.log(redis.LOG_WARNING, "stockgate: corrupt hold " .. key)
    return 0, true, to
  end
  local held, dest = mget(KEYS[base + 2], KEYS[base + to])
  if not counter(held) or not counter(dest) then
    redis.log(redis.LOG_WARNING, "stockgate: non-integer counter for " .. key)
    return nil
  end
  check_deadlines(n, KEYS[base + 5], order)
  return q, true, to
end

-- Moves qty units of the hold in the group at KEYS[base] out of held into
-- KEYS[base + to] and drops the order from the deadlines. The ZREM goes
-- first: for one SKU it is the deadlines type check.
local function move_held(base, qty, to, order)
  redis.call("ZREM", KEYS[base + 5], order)
  redis.call("DECRBY", KEYS[base + 2], qty)
  -- A missing available counter is a fenced SKU (after a failover, or a
  -- partial loss): creating it here would unfence it with only these units.
  -- The units go back when rebuild derives available from the other two.
  if to ~= 1 or redis.call("EXISTS", KEYS[base + 1]) == 1 then
    redis.call("INCRBY", KEYS[base + to], qty)
  end
end

-- Writes one SKU's counters to KEYS[1..3] and returns them as the reply of
-- set, add and rebuild.
local function write_levels(avail, held, sold)
  redis.call("SET", KEYS[1], avail)
  redis.call("SET", KEYS[2], held)
  redis.call("SET", KEYS[3], sold)
  return {avail, held, sold}
end
