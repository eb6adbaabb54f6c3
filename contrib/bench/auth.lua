-- wrk script for tokend's benchmarks: GET /auth with a bearer token.
--
-- Environment (wrk passes no arguments to init() that survive -t N, so
-- the driver uses variables):
--   BENCH_TOKENS  file with one token per line (required)
--   BENCH_MODE    "random" (default): a random token of the file per request
--                 "seq": each thread walks the file in order from its own
--                 offset, and stops once it has received BENCH_STOP
--                 responses (cache fills and all-miss runs)
--   BENCH_FIRST   first line to use (1-based, default 1)
--   BENCH_COUNT   how many lines from BENCH_FIRST (default: all)
--   BENCH_STOP    seq mode: responses per thread after which it stops
--                 (default BENCH_COUNT / threads)
--   BENCH_PATH    request path (default /auth)
--   BENCH_LINE    "1": each request also carries X-Bench-Line, its line
--                 number in six digits, so that a table of the same
--                 tokens repeated holds as many distinct requests as lines
--
-- done() prints one JSON line, prefixed "BENCH_JSON ", for the driver.

local tokens = {}
local reqs = {}		-- random mode: each token's request, made once
local n = 0
local mode = os.getenv("BENCH_MODE") or "random"
local path = os.getenv("BENCH_PATH") or "/auth"
local line_header = os.getenv("BENCH_LINE") == "1"
local threads = {}
local next_i, stop_after, got = 1, 0, 0

local function load_tokens()
	local file = os.getenv("BENCH_TOKENS")
	local first = tonumber(os.getenv("BENCH_FIRST") or "1")
	local count = tonumber(os.getenv("BENCH_COUNT") or "0")
	local i = 0
	for line in io.lines(file) do
		i = i + 1
		if i >= first then
			n = n + 1
			tokens[n] = line
			if count > 0 and n >= count then break end
		end
	end
	if n == 0 then error("no tokens in " .. file) end
end

function request_for(t, i)
	local h = { ["Authorization"] = "Bearer " .. t }
	if line_header then h["X-Bench-Line"] = string.format("%06d", i) end
	return wrk.format("GET", path, h)
end

function setup(thread)
	thread:set("id", #threads)
	table.insert(threads, thread)
end

function init(args)
	load_tokens()
	math.randomseed(os.time() * 1000 + (id or 0) * 7919)
	if mode == "seq" then
		local nthreads = tonumber(os.getenv("BENCH_THREADS") or "1")
		local per = math.floor(n / nthreads)
		next_i = (id or 0) * per + 1
		stop_after = tonumber(os.getenv("BENCH_STOP") or tostring(per))
	else
		-- Made once here, not per request: LuaJIT interns every string,
		-- so building a request per call cost wrk more with 100,000
		-- tokens (a new string each time) than with 1,000 (found in its
		-- string table), and the client, not tokend, set the pace.
		for i = 1, n do reqs[i] = request_for(tokens[i], i) end
	end
end

function request()
	if mode ~= "seq" then return reqs[math.random(n)] end
	local i = next_i
	next_i = next_i + 1
	if next_i > n then next_i = 1 end
	return request_for(tokens[i], i)
end

if mode == "seq" then
	function response(status, headers, body)
		got = got + 1
		if got >= stop_after then wrk.thread:stop() end
	end
end

function done(summary, latency, requests)
	local e = summary.errors
	io.write(string.format(
	    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
	    '"err_connect":%d,"err_read":%d,"err_write":%d,' ..
	    '"err_status":%d,"err_timeout":%d,' ..
	    '"lat_mean_us":%.1f,"lat_max_us":%d,' ..
	    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d}\n',
	    summary.requests, summary.duration, summary.bytes,
	    e.connect, e.read, e.write, e.status, e.timeout,
	    latency.mean, latency.max,
	    latency:percentile(50), latency:percentile(90),
	    latency:percentile(99), latency:percentile(99.9)))
end
