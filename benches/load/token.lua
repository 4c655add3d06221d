-- wrk script of the load benchmark (benches/load.rs): token requests spread over many
-- connections. Each thread walks the ids in BENCH_IDS (one per line) from a random start;
-- BENCH_DELAY_MS > 0 paces every connection to one request per that many milliseconds (the
-- fixed-rate run that reads latency). `done` prints one JSON line the benchmark parses.

local ids = {}
local key = os.getenv("BENCH_API_KEY") or ""
local pace = tonumber(os.getenv("BENCH_DELAY_MS") or "0")
local next_id = 1

function init(args)
  for line in io.lines(os.getenv("BENCH_IDS")) do
    ids[#ids + 1] = line
  end
  math.randomseed(os.time() + math.floor(os.clock() * 1000000))
  next_id = math.random(#ids)
end

function request()
  next_id = next_id % #ids + 1
  return wrk.format("GET", "/v1/connections/" .. ids[next_id] .. "/token", { ["Authorization"] = "Bearer " .. key })
end

if pace > 0 then
  function delay()
    return pace
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"socket_errors":%d,"status_errors":%d,"p50_us":%d,"p99_us":%d,"p999_us":%d}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
