-- post.lua: wrk's script for make bench/api. Every request is POST
-- /v1/orders with an order of its own: ids RUN-THREAD-N (RUN from the
-- environment, default "wrk"), one unit of SKU (default BENCH-API), from a
-- customer per order. When wrk is done it prints one JSON line with what
-- the benchmark reads: requests, non-2xx answers, socket errors, seconds,
-- and latency percentiles in ms.
--
--   RUN=r1 SKU=BENCH-API wrk -t2 -c64 -d20s -s bench/api/post.lua http://127.0.0.1:8090/v1/orders

local run = os.getenv("RUN") or "wrk"
local sku = os.getenv("SKU") or "BENCH-API"
local key = os.getenv("API_KEY")
local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
  table.insert(threads, thread)
end

local n = 0
local headers = { ["Content-Type"] = "application/json" }
if key then headers["Authorization"] = "Bearer " .. key end

function request()
  n = n + 1
  local id = string.format("%s-%d-%d", run, tid, n)
  local body = string.format('{"order_id":"%s","customer_id":"c-%s","lines":[{"sku":"%s","qty":1}]}', id, id, sku)
  return wrk.format("POST", nil, headers, body)
end

function done(summary, latency, _)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"non2xx":%d,"socket_errors":%d,"seconds":%.3f,"p50_ms":%.2f,"p99_ms":%.2f,"max_ms":%.2f}\n',
    summary.requests, e.status, e.connect + e.read + e.write + e.timeout, summary.duration / 1e6,
    latency:percentile(50) / 1e3, latency:percentile(99) / 1e3, latency.max / 1e3))
end
