-- Load script for wrk: POST the body file to the URL; optionally stop after N answers.
-- Arguments after `--`: BODY_FILE [MAX_ANSWERS]. At the end one line on stdout:
-- BENCH_JSON {"requests": ..., "duration_us": ..., "p50_us": ..., ...}

local request_text
local answers = 0
local max_answers = 0

function init(args)
  local file = assert(io.open(args[1], "rb"))
  local body = file:read("*a")
  file:close()
  max_answers = tonumber(args[2] or "0")
  wrk.headers["Content-Type"] = "application/json"
  request_text = wrk.format("POST", nil, nil, body)
  if max_answers > 0 then
    -- Only defined when needed: with no response() wrk does not parse answers.
    response = function(status, headers, body)
      answers = answers + 1
      if answers == max_answers then
        -- The thread stops sending; the harness then ends wrk early (SIGINT) on this line.
        wrk.thread:stop()
        io.write("BENCH_STOPPED\n")
        io.stdout:flush()
      end
    end
  end
end

function request()
  return request_text
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, ' ..
    '"max_us": %d, "mean_us": %.1f, "connect_errors": %d, "read_errors": %d, "write_errors": %d, ' ..
    '"status_errors": %d, "timeouts": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean, e.connect, e.read, e.write, e.status,
    e.timeout))
end
