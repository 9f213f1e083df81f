-- ratelimit.lua: count one attempt in a customer's fixed window.
--
-- KEYS:
--   [1] -> sg:rate:{CUSTOMER}  attempts in the current window
-- ARGV:
--   [1] -> limit, attempts allowed per window (>= 1)
--   [2] -> window, milliseconds (>= 1)
-- Returns {allowed, count}: allowed is 1 while count <= limit, else 0.
-- {-2, 0} means bad arguments (a limit or window past 12 digits included)
-- or a count that is not a number; nothing changed then. The rate key is no
-- stock counter: these checks stay because they are Allow's ErrInvalid
-- contract, which internal/stock's tests pin.

local limit, window = uint(ARGV[1]), uint(ARGV[2])
if not limit or not window or limit < 1 or window < 1 or limit >= 1e12 or window >= 1e12 then
  return {-2, 0}
end
local current = redis.call("GET", KEYS[1])
if current and tonumber(current) == nil then
  return {-2, 0}
end

local count = redis.call("INCR", KEYS[1])
-- A key left without a TTL would rate-limit the customer forever.
if count == 1 or redis.call("PTTL", KEYS[1]) < 0 then
  redis.call("PEXPIRE", KEYS[1], window)
end
if count <= limit then
  return {1, count}
end
return {0, count}
