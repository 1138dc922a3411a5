-- wrk script for scripts/bench.sh: POSTs bigpipe /rpc/call bodies.
--
-- Environment (read once per wrk thread):
--   BENCH_DATA_BYTES   size of the "data" string (default 100)
--   BENCH_ACK          "" (server default), "queue" or "kafka"
--   BENCH_TARGET_URL   the call's "url" (default http://127.0.0.1:1/x)
--   BENCH_ACL_NAME / BENCH_ACL_SECRET   the caller (default bench / bench-secret)
--   BENCH_BODIES       distinct bodies to rotate through (default 256), so
--                      records do not all compress to nothing in a Kafka batch
--   BENCH_BATCH        0 (default): one call per request, for /rpc/call; N > 0: each
--                      request is a /rpc/calls batch of N calls (its own ack at batch level)
--   BENCH_KEYS         "" (default): no idempotency key; "fresh": a new idempotency_key in
--                      every request (each one claimed and written); "repeat": one key per
--                      body, so after the first round every request repeats a key (answered
--                      with the first id, nothing written). /rpc/call only.
--
-- done() prints one line "BENCHJSON {...}" with requests, duration, errors
-- and latency percentiles (microseconds) from latency:percentile().

local data_bytes = tonumber(os.getenv("BENCH_DATA_BYTES") or "100")
local ack = os.getenv("BENCH_ACK") or ""
local target = os.getenv("BENCH_TARGET_URL") or "http://127.0.0.1:1/x"
local acl_name = os.getenv("BENCH_ACL_NAME") or "bench"
local acl_secret = os.getenv("BENCH_ACL_SECRET") or "bench-secret"
local n_bodies = tonumber(os.getenv("BENCH_BODIES") or "256")
local batch = tonumber(os.getenv("BENCH_BATCH") or "0")
local keys = os.getenv("BENCH_KEYS") or ""

local alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
local requests = {}
local index = 0
-- "fresh" keys: each body without its closing brace, and a counter per thread
local prefixes = {}
local counter = 0
local thread_tag = ""
local headers = { ["Content-Type"] = "application/json" }

local function random_data(n)
  local t = {}
  for i = 1, n do
    local k = math.random(1, #alphabet)
    t[i] = alphabet:sub(k, k)
  end
  return table.concat(t)
end

local function call_body(i)
  local body = '{"acl":{"name":"' .. acl_name .. '","secret":"' .. acl_secret .. '"},'
    .. '"url":"' .. target .. '","data":"' .. random_data(data_bytes) .. '",'
    .. '"partition_key":"k' .. i .. '"'
  if ack ~= "" and batch == 0 then
    body = body .. ',"ack":"' .. ack .. '"'
  end
  return body .. "}"
end

function init(args)
  math.randomseed(os.time() + (tonumber(tostring({}):sub(8), 16) or 0))
  -- Keys of different threads and runs never meet: a random tag per thread.
  thread_tag = random_data(12)
  for i = 1, n_bodies do
    local body
    if batch > 0 then
      local items = {}
      for j = 1, batch do
        items[j] = call_body((i - 1) * batch + j)
      end
      body = '{"calls":[' .. table.concat(items, ",") .. ']'
      if ack ~= "" then
        body = body .. ',"ack":"' .. ack .. '"'
      end
      body = body .. "}"
    else
      body = call_body(i)
    end
    if keys == "repeat" then
      body = body:sub(1, -2) .. ',"idempotency_key":"r' .. thread_tag .. '-' .. i .. '"}'
    end
    prefixes[i] = body:sub(1, -2)
    requests[i] = wrk.format("POST", nil, headers, body)
  end
end

function request()
  index = index % n_bodies + 1
  if keys == "fresh" then
    counter = counter + 1
    return wrk.format("POST", nil, headers,
      prefixes[index] .. ',"idempotency_key":"f' .. thread_tag .. '-' .. counter .. '"}')
  end
  return requests[index]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%d,"duration_us":%d,"bytes":%d,'
      .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
      .. '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"p999":%d,"mean":%.1f,"max":%d,"stdev":%.1f}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.mean, latency.max, latency.stdev))
end
