-- wrk script used by `python -m bench`: POST one JSON body, count non-2xx exactly.
-- The body file path comes from the BENCH_BODY_FILE environment variable.
-- wrk itself counts only status > 399 as errors; this counts every status outside 200-299 and
-- prints it from done() as "BENCH_NON2XX <n>" for the harness to parse.

local path = os.getenv("BENCH_BODY_FILE")
if path == nil then
  error("BENCH_BODY_FILE is not set")
end
local fh = assert(io.open(path, "rb"))
local body = fh:read("*a")
fh:close()

wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  non2xx = 0
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  end
end

function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do
    total = total + thread:get("non2xx")
  end
  io.write(string.format("BENCH_NON2XX %d\n", total))
end
