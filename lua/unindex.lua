-- unindex.lua: drop one SKU from the hold index (docs/design.md, "Redis
-- keys"), but only if no reserve has marked it since the caller looked.
-- The caller (the sweeper, through internal/stock) has seen the SKU's
-- deadlines set empty and the entry's score, the latest hold deadline a
-- reserve marked, in the past. The deadlines set lives in another slot, so
-- it cannot be read here; the score is what makes the two reads one
-- decision: every reserve marks its SKU with its own deadline, later than
-- any in the past, so a reserve that may have taken a hold since moves the
-- score, and the entry stays.
--
-- KEYS:
--   [1] -> sg:{holding:B}   one bucket of the index: zset SKU -> latest deadline marked
-- ARGV:
--   [1] -> the SKU
--   [2] -> the score the caller read for it (unix ms)
-- Returns 1 when the entry was removed, 0 when it was gone or its score
-- had moved (it stays).

local score = redis.call("ZSCORE", KEYS[1], ARGV[1])
if score and tonumber(score) == tonumber(ARGV[2]) then
  redis.call("ZREM", KEYS[1], ARGV[1])
  return 1
end
return 0
